"""The ``definet`` command."""

from __future__ import annotations

import argparse
import sys

from definet_core.cli import add_core_commands, run_handler


def build_parser() -> argparse.ArgumentParser:
    """Parser with every ``definet`` subcommand."""
    parser = argparse.ArgumentParser(prog="definet", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_core_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``definet`` console script."""
    args = build_parser().parse_args(argv)
    return run_handler(args)


if __name__ == "__main__":
    sys.exit(main())
