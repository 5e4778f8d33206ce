"""Perplexity: exact on models whose answer is known, and the windowing protocols count the right tokens."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.measure.perplexity import perplexity


class Uniform(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, ids):
        return torch.zeros(*ids.shape, self.vocab)


class Oracle(nn.Module):
    """Predicts the next token of a known stream with probability p."""

    def __init__(self, vocab, p):
        super().__init__()
        self.vocab, self.p = vocab, p

    def forward(self, ids):
        nxt = (ids + 1) % self.vocab  # the stream below counts up
        logits = torch.full((*ids.shape, self.vocab), math.log((1 - self.p) / (self.vocab - 1)))
        return logits.scatter(-1, nxt[..., None], math.log(self.p))


def test_uniform_model_has_perplexity_equal_to_vocab():
    r = perplexity(Uniform(50), torch.randint(0, 50, (1000,)), window=100, progress=False)
    assert r.perplexity == pytest.approx(50, rel=1e-6)
    assert r.windows == 10 and r.tokens_scored == 10 * 99


def test_known_probability():
    stream = torch.arange(1000) % 37
    r = perplexity(Oracle(37, 0.9), stream, window=64, progress=False)
    assert r.perplexity == pytest.approx(1 / 0.9, rel=1e-6)


def test_sliding_windows_score_each_token_once():
    stream = torch.arange(1000) % 37
    r = perplexity(Oracle(37, 0.5), stream, window=100, stride=50, progress=False)
    # first window scores 99 targets, each later one its last 50
    assert r.tokens_scored == 99 + 50 * (r.windows - 1)
    assert r.perplexity == pytest.approx(2.0, rel=1e-6)


def test_errors():
    with pytest.raises(ConfigError, match="shorter than one window"):
        perplexity(Uniform(5), torch.zeros(10, dtype=torch.long), window=64, progress=False)
    with pytest.raises(ConfigError, match="stride"):
        perplexity(Uniform(5), torch.zeros(100, dtype=torch.long), window=10, stride=20, progress=False)
