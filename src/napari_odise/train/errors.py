"""The refusal fine-tuning can meet mid-run: the loss left the finite numbers."""

from __future__ import annotations

from napari_odise.errors import UserError


class TrainingDivergedError(UserError, FloatingPointError):
    """The loss or the model's outputs stopped being finite; the message says to lower the learning
    rate. Also a FloatingPointError, as it was before the hierarchy."""


class ResumeCheckpointError(UserError, ValueError):
    """``last.pt`` cannot be resumed from (damaged, not written by napari-odise, or unsafe);
    nothing from it was executed. The message names the file and says to remove it."""
