"""`python -m mpliver ...`: the same command line as the `mpliver` entry point."""

import sys

from mpliver.cli import main

sys.exit(main())
