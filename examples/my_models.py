"""Models written the way people write them, outside slimtorch's zoo.

Recipes name them with ``model: {class: "examples/my_models.py:MnistCNN"}``;
slimtorch then imports this file (running it), builds the class with the
recipe's ``kwargs`` and, if given, loads ``weights``. See docs/user_models.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MnistCNN(nn.Module):
    """A small MNIST CNN: two conv blocks, dropout, two fully connected layers.

    ``forward`` checks its input's shape (a habit that breaks FX tracing, so
    slimtorch must not rely on tracing).
    """

    def __init__(self, width: int = 16, hidden: int = 64, num_classes: int = 10, dropout: float = 0.25):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.drop = nn.Dropout(dropout)
        self.fc1 = nn.Linear(2 * width * 7 * 7, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"expected images of shape (N, 1, 28, 28), got {tuple(x.shape)}")
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = self.drop(torch.flatten(x, 1))
        return self.fc2(F.relu(self.fc1(x)))


class SpeakerEncoder(nn.Module):
    """A d-vector speaker encoder of the same shape as Resemblyzer's ``VoiceEncoder``.

    ``mels (N, T, 40) -> embedding (N, 256)``: a 3-layer LSTM over log-mel frames,
    the last layer's final hidden state through Linear + ReLU, L2-normalised.
    Its state-dict keys match Resemblyzer's ``pretrained.pt`` (``lstm.*``, ``linear.*``).
    """

    def __init__(self, mel_channels: int = 40, hidden: int = 256, layers: int = 3, embedding: int = 256):
        super().__init__()
        self.lstm = nn.LSTM(mel_channels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, embedding)
        self.relu = nn.ReLU()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        embeds = self.relu(self.linear(hidden[-1]))
        return embeds / torch.norm(embeds, dim=1, keepdim=True).clamp(min=1e-12)
