"""``python -m tfprune ...``: the ``tfprune`` command, for environments without its script."""

import sys

from tfprune.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
