"""``python -m workflows.cli``: the ``definet`` command, for environments without the console script."""

import sys

from workflows.cli.main import main

sys.exit(main())
