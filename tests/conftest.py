"""Shared fixtures: tiny models written the way users write them, tiny data."""

from __future__ import annotations

import pytest
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
