"""Real photos for ImageNet-model fidelity checks, from the images shipped in ``skimage.data``.

No ImageNet validation set is available offline, so ImageNet models are judged by
agreement with their float original on real photos: every image in
``skimage.data`` (colour, and greyscale as RGB), many random crops / flips / scales
of each (random scale 0.25–1 of the short side, aspect 3/4–4/3, horizontal flips),
resized to 224 and ImageNet-normalised. The split is by source photo, so
calibration ("train") and evaluation ("test") never share a photo (``chelsea`` and
``cat`` are the same photo: kept on one side). Labels are :data:`UNLABELLED` (-1):
measurements report agreement with the reference model instead of accuracy.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from slimtorch.core.errors import DataNotFoundError

UNLABELLED = -1
CALIB_PHOTOS = ["astronaut", "coffee", "immunohistochemistry", "camera", "brick", "coins", "moon"]
EVAL_PHOTOS = [
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "colorwheel",
    "retina",
    "logo",
    "clock",
    "grass",
    "gravel",
    "page",
    "text",
    "cell",
]
# Benchmarks keep whole photos apart in three splits: calibration (CALIB_PHOTOS), selection (settings
# sweeps and the fallback are scored on it) and test (reported once). The selection photos are two
# that ship outside EVAL_PHOTOS (the left view of ``stereo_motorcycle``, the ``horse`` silhouette)
# and two moved out of it; :func:`photo_splits`.
SELECTION_PHOTOS = ["stereo_motorcycle", "horse", "clock", "gravel"]
TEST_PHOTOS = [p for p in EVAL_PHOTOS if p not in SELECTION_PHOTOS]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def photo(name: str) -> torch.Tensor:
    """One ``skimage.data`` image as a (3, H, W) float tensor in [0, 1]."""
    try:
        import skimage.data as d
    except ImportError:
        raise DataNotFoundError(
            "the photo set needs scikit-image: pip install scikit-image (or bash scripts/setup.sh)"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = getattr(d, name)()
    a = np.asarray(a[0] if isinstance(a, tuple) else a)  # stereo pairs: the left view
    if a.dtype == bool:  # silhouettes
        a = a.astype(np.uint8) * 255
    a = a[..., :3] if a.ndim == 3 else np.stack([a] * 3, -1)
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0


def crops(names: list[str], per_photo: int, seed: int, size: int = 224) -> torch.Tensor:
    """``(len(names) * per_photo, 3, size, size)`` ImageNet-normalised random crops."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name in names:
        img = photo(name)
        H, W = img.shape[1:]
        for _ in range(per_photo):
            s = float(torch.empty(1).uniform_(0.25, 1.0, generator=g)) * min(H, W)
            ar = float(torch.empty(1).uniform_(0.75, 1.333, generator=g))
            h, w = min(H, int(s * ar**0.5)), min(W, int(s / ar**0.5))
            y = int(torch.randint(0, H - h + 1, (1,), generator=g))
            x = int(torch.randint(0, W - w + 1, (1,), generator=g))
            c = img[:, y : y + h, x : x + w]
            if float(torch.rand(1, generator=g)) < 0.5:
                c = c.flip(2)
            c = F.interpolate(c[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
            out.append((c.clamp(0, 1) - MEAN) / STD)
    return torch.stack(out)


def load_photos(
    calib_per_photo: int = 16, eval_per_photo: int = 44, size: int = 224
) -> tuple[TensorDataset, TensorDataset]:
    """(calibration, evaluation) crop sets with :data:`UNLABELLED` targets."""
    calib = crops(CALIB_PHOTOS, calib_per_photo, seed=1, size=size)
    evals = crops(EVAL_PHOTOS, eval_per_photo, seed=2, size=size)
    unl = lambda n: torch.full((n,), UNLABELLED, dtype=torch.long)  # noqa: E731
    return TensorDataset(calib, unl(len(calib))), TensorDataset(evals, unl(len(evals)))


def is_unlabelled(dataset) -> bool:
    """Whether ``dataset``'s targets are the :data:`UNLABELLED` marker (checked on its first example)."""
    if dataset is None or len(dataset) == 0:
        return False
    y = dataset[0][1]
    return torch.is_tensor(y) and y.ndim == 0 and int(y) == UNLABELLED


def photo_splits(
    calib_per_photo: int = 16, selection_per_photo: int = 24, test_per_photo: int = 44, size: int = 224
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """Calibration / selection / test crops from disjoint photos, and the split's record.

    Returns:
        ``(calibration, selection, test, info)``; ``info`` has the counts, the photos of each
        split, the seeds and ``disjoint`` (no photo in two splits, computed).
    """
    names = {"calibration": CALIB_PHOTOS, "selection": SELECTION_PHOTOS, "test": TEST_PHOTOS}
    seeds = {"calibration": 1, "selection": 3, "test": 2}
    per = {"calibration": calib_per_photo, "selection": selection_per_photo, "test": test_per_photo}
    out = {k: crops(names[k], per[k], seed=seeds[k], size=size) for k in names}
    # chelsea and cat are one photo; count them as one
    same = {"cat": "chelsea"}
    sets = {k: {same.get(n, n) for n in v} for k, v in names.items()}
    disjoint = not (
        sets["calibration"] & sets["selection"]
        or sets["calibration"] & sets["test"]
        or sets["selection"] & sets["test"]
    )
    info = {
        **{k: len(v) for k, v in out.items()},
        "disjoint": disjoint,
        "photos": names,
        "seeds": seeds,
        "crops_per_photo": per,
    }
    return out["calibration"], out["selection"], out["test"], info
