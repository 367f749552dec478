"""The ``napari-odise`` command.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func``; ``main`` only wires them together, and is the one place that turns a
refusal (:class:`~napari_odise.errors.UserError`) into a message and an exit status
(:mod:`napari_odise.cli.refusals`). Every other exception is a bug and propagates as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from napari_odise import __version__
from napari_odise.cli.refusals import INTERRUPTED, refuse, refused_status
from napari_odise.errors import Cancelled, UserError

# Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS: list[str] = [
    "weights",
    "export",
    "segment",
    "relabel",
    "merge",
    "dataset",
    "finetune",
    "vocab",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-odise",
        description="Open-vocabulary panoptic segmentation with ODISE, from the command line.",
    )
    parser.add_argument("--version", action="version", version=f"napari-odise {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        import_module(f"napari_odise.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run a parsed subcommand: a refusal becomes its message and exit status, a cancellation
    status 130; anything else propagates (a bug)."""
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        return refuse(error, refused_status(args))
    except Cancelled as error:
        print(f"napari-odise: {str(error) or 'cancelled'}", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
