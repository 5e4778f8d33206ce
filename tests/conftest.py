"""Shared fixtures: tiny models written the way users write them, tiny data."""

from __future__ import annotations

import os

# Several tests assert bit-equality between two computations of the same thing (streamed vs
# in-memory GPTQ, a resumed vs an uninterrupted run). MKL's GEMM may pick a different code path
# for differently aligned buffers, which changes float rounding between otherwise identical
# calls; in strict conditional-numerical-reproducibility mode its ?gemm results are bitwise
# reproducible (Intel oneMKL developer guide, "Reproducibility Conditions"). Set before the
# first MKL call; a user's own setting wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import pytest  # noqa: E402
import torch
from torch import nn
from torch.utils.data import TensorDataset

from tests.user_models import UserNet


@pytest.fixture
def user_net() -> nn.Module:
    torch.manual_seed(0)
    return UserNet()


@pytest.fixture
def tiny_data() -> tuple[TensorDataset, TensorDataset]:
    from slimtorch.data import get_dataset

    return get_dataset("synthetic", n_train=256, n_test=128)
