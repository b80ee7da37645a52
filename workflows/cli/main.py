"""definet: predict relaxed point-defect structures with DefiNet and validate them with atomate2 relaxations."""

from __future__ import annotations

import argparse
import sys
import warnings
from importlib.metadata import entry_points

from definet_core.cli import add_core_commands, run_handler
from workflows.cli.dataset import add_dataset_commands
from workflows.cli.db import add_db_commands
from workflows.cli.run import add_run_commands


def build_parser() -> argparse.ArgumentParser:
    """Parser with every ``definet`` subcommand."""
    parser = argparse.ArgumentParser(prog="definet", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_run_commands(subparsers)
    add_core_commands(subparsers)
    add_db_commands(subparsers)
    add_dataset_commands(subparsers)
    for plugin in entry_points(group="definet.commands"):  # e.g. `submit` from the launchpad package
        plugin.load()(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``definet`` console script."""
    for category in (DeprecationWarning, FutureWarning):  # library chatter; definet's own warnings stay
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", module=r"chgnet\..*")
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"definet: warning: {message}\n"
    args = build_parser().parse_args(argv)
    return run_handler(args)


if __name__ == "__main__":
    sys.exit(main())
