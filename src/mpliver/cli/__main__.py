import sys

from mpliver.cli import main

sys.exit(main())
