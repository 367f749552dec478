"""The trainable head from an ODISE checkpoint: the official release or one fine-tuned here.

Official files are detectron2 checkpoints, ``{"model": {...}, ...}``; keys are mapped with
:mod:`key_mapping`. Checkpoints saved by napari-odise use the same official layout.
"""

from __future__ import annotations

import torch

from .key_mapping import IGNORED_OFFICIAL_KEYS, official_to_ours, ours_to_official
from .weight_errors import check_state_dict


def convert_head(state: dict[str, torch.Tensor], model, source: str) -> dict[str, torch.Tensor]:
    """Official-layout head tensors -> our trainable state dict names (checked, strict).

    The check is made in the file's own (official) names, so an error names the keys as the file
    has them; ``criterion.empty_weight`` (a training-loss buffer) is ignored.
    """
    variant = model.config.variant
    expected = {ours_to_official(k, variant): tuple(v.shape) for k, v in model.trainable_state_dict().items()}
    present = {k: v for k, v in state.items() if k not in IGNORED_OFFICIAL_KEYS}
    check_state_dict(expected, present, source, f"ODISE {variant} model head")
    return {official_to_ours(k): v for k, v in present.items()}


def load_head_into(model, state: dict[str, torch.Tensor], assign: bool = False) -> None:
    """Copy (or assign, for meta-built models) our-named head tensors into the model."""
    for prefix, module in model.trainable_modules().items():
        sub = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
        module.load_state_dict(sub, strict=True, assign=assign)


def official_state_dict(model) -> dict[str, torch.Tensor]:
    """The head in the released checkpoints' layout (what ``convert_head`` reads back).

    ``criterion.empty_weight`` is added as the official files have it: 1 per training class, 0.1
    for "no object" (133 classes for the label model, 1 for the caption model).
    """
    variant = model.config.variant
    state = {ours_to_official(k, variant): v.detach().cpu().clone() for k, v in model.trainable_state_dict().items()}
    classes = model.config.num_categories_trained
    state["criterion.empty_weight"] = torch.cat([torch.ones(classes), torch.tensor([0.1])])
    return state
