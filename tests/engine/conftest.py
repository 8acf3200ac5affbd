"""Makes the tiny stand-in model and data of `engine_toys.py` importable by tests and subprocesses."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
