"""Whole-folder writes: build a folder under a hidden staging name beside its target, then swap it into place,
so a failure or a kill never leaves a half-written dataset or series behind. The helpers live in
`mpliver.io.atomic` (one set of temporary names and one clean-up for files and folders)."""

from __future__ import annotations

from mpliver.io.atomic import make_staging, normal_permissions, staged_folder, swap_in

__all__ = ["make_staging", "normal_permissions", "staged_folder", "swap_in"]
