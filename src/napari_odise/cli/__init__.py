"""The ``napari-odise`` command.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func``; ``main`` only wires them together.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from napari_odise import __version__

# Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS: list[str] = [
    "weights",
    "export",
    "segment",
    "relabel",
    "merge",
    "finetune",
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
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
