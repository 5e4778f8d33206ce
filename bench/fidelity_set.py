"""Real photos for CNN fidelity checks: every image in ``skimage.data`` (colour, and greyscale as RGB),
many random crops / flips / scales of each, split by source photo so calibration and
evaluation never share a photo. ``chelsea`` and ``cat`` are the same photo (kept on one side).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.nn import functional as F

CALIB_PHOTOS = ["astronaut", "coffee", "immunohistochemistry", "camera", "brick", "coins", "moon"]
EVAL_PHOTOS = ["chelsea", "rocket", "hubble_deep_field", "colorwheel", "retina", "logo", "clock", "grass",
               "gravel", "page", "text", "cell"]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def photo(name: str) -> torch.Tensor:
    import skimage.data as d

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = np.asarray(getattr(d, name)())
    a = a[..., :3] if a.ndim == 3 else np.stack([a] * 3, -1)
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0


def crops(names: list[str], per_photo: int, seed: int) -> torch.Tensor:
    """(N, 3, 224, 224) ImageNet-normalised crops: random scale 0.25–1 of the short side, aspect 3/4–4/3, flips."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name in names:
        img = photo(name)
        H, W = img.shape[1:]
        for _ in range(per_photo):
            s = float(torch.empty(1).uniform_(0.25, 1.0, generator=g)) * min(H, W)
            ar = float(torch.empty(1).uniform_(0.75, 1.333, generator=g))
            h, w = min(H, int(s * ar ** 0.5)), min(W, int(s / ar ** 0.5))
            y, x = int(torch.randint(0, H - h + 1, (1,), generator=g)), int(torch.randint(0, W - w + 1, (1,), generator=g))
            c = img[:, y:y + h, x:x + w]
            if float(torch.rand(1, generator=g)) < 0.5:
                c = c.flip(2)
            c = F.interpolate(c[None], size=(224, 224), mode="bilinear", antialias=True, align_corners=False)[0]
            out.append((c.clamp(0, 1) - MEAN) / STD)
    return torch.stack(out)


def fidelity_split(calib_per_photo: int = 16, eval_per_photo: int = 44) -> tuple[torch.Tensor, torch.Tensor]:
    return crops(CALIB_PHOTOS, calib_per_photo, seed=1), crops(EVAL_PHOTOS, eval_per_photo, seed=2)
