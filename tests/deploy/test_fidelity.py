"""Fidelity metrics against a float reference (no labels)."""

from __future__ import annotations

import math

import pytest
import torch

from slimtorch.deploy.fidelity import fidelity


def test_identical_outputs_are_perfectly_faithful():
    ref = torch.randn(20, 5)
    f = fidelity(ref, ref.clone())
    assert f["top1_agreement"] == 1.0 and f["cosine_mean"] == pytest.approx(1.0) and abs(f["mean_kl"]) < 1e-6


def test_kl_matches_a_hand_computation():
    ref, out = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    p = [math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]
    q = [1 / (1 + math.e), math.e / (1 + math.e)]
    assert fidelity(ref, out)["mean_kl"] == pytest.approx(sum(a * math.log(a / b) for a, b in zip(p, q)), rel=1e-5)


def test_confident_agreement_counts_only_confident_references():
    # row 0: a confident reference (p ≈ 0.96) that the output keeps;
    # rows 1-2: three-way near ties (top-1 p ≈ 0.34) that the output flips
    ref = torch.tensor([[4.0, 0.0, 0.0], [0.02, 0.0, 0.0], [0.0, 0.02, 0.0]])
    out = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.02, 0.0], [0.02, 0.0, 0.0]])
    f = fidelity(ref, out)
    assert f["top1_agreement"] == pytest.approx(1 / 3)
    assert f["confident_n"] == 1 and f["confident_agreement"] == 1.0


def test_embeddings_get_cosine_only():
    f = fidelity(torch.randn(4, 1), torch.randn(4, 1))
    assert "top1_agreement" not in f and "confident_agreement" not in f
