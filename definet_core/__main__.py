"""``python -m definet_core train | evaluate | predict``: the model commands without the workflow stack.

For GPU nodes that carry only torch, torch_geometric and pymatgen (no jobflow, atomate2 or FireWorks).
"""

from __future__ import annotations

import argparse
import sys

from definet_core.cli import add_core_commands, run_handler


def main(argv: list[str] | None = None) -> int:
    """Parse and run one model command."""
    parser = argparse.ArgumentParser(prog="python -m definet_core", description=__doc__)
    add_core_commands(parser.add_subparsers(dest="command", required=True))
    return run_handler(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
