"""Shared fixtures. Real-data fixtures live in ../shared/data beside the checkout; tests that need them skip
with a clear reason where it is absent (a clone outside this workplace)."""

from __future__ import annotations

import os
from pathlib import Path

# OpenMP threads that spin-wait make torch 6x slower on a loaded 2-core machine; must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MPLIVER_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real CT fixtures (../shared/data); skips the test where they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data fixtures not found at {SHARED_DATA} (set MPLIVER_SHARED_DATA)")
    return SHARED_DATA
