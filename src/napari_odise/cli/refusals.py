"""How the command reports a refusal, in one place.

A :class:`~napari_odise.errors.UserError` (bad input, a missing or refused file, weights not
downloaded) is printed as ``napari-odise: error: MESSAGE`` on stderr and ends the command with
status 2, as argparse does for bad usage; a subcommand may document another status (``weights``,
``export`` and ``finetune`` use 1). Anything else is a bug and leaves as a traceback.
"""

from __future__ import annotations

import sys

REFUSED = 2  # bad usage, or the work cannot start as asked
INTERRUPTED = 130  # Ctrl+C, or the work was cancelled: run again to resume


def refuse(error: BaseException | str, status: int = REFUSED) -> int:
    """Print the refusal's message (nothing else: it says what to do) and return ``status``."""
    print(f"napari-odise: error: {error}", file=sys.stderr)
    return status


def refused_status(args) -> int:
    """The status a subcommand ends with when refused (``set_defaults(refused_status=...)``)."""
    return getattr(args, "refused_status", REFUSED)
