import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset


class UserNet(nn.Module):
    """A hand-written model with its own forward (functional ops, no Sequential)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.head = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 1)
        return self.head(torch.flatten(x, 1))

    @staticmethod
    def example_inputs():
        return (torch.randn(2, 1, 8, 8),)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@pytest.fixture
def user_net():
    torch.manual_seed(0)
    return UserNet().eval()


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return MLP().eval()


@pytest.fixture
def image_data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    return TensorDataset(x, y)


@pytest.fixture
def vec_data():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(128, 16, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return TensorDataset(x, y)
