"""Real photos for CNN fidelity checks: now :mod:`slimtorch.data.photos` (kept for the benches' imports)."""

from __future__ import annotations

from slimtorch.data.photos import CALIB_PHOTOS, EVAL_PHOTOS, MEAN, STD, crops, photo  # noqa: F401


def fidelity_split(calib_per_photo: int = 16, eval_per_photo: int = 44):
    return crops(CALIB_PHOTOS, calib_per_photo, seed=1), crops(EVAL_PHOTOS, eval_per_photo, seed=2)
