"""Real sentences for sentence encoders: whole documents per split, disjoint, reproducible."""

from __future__ import annotations

import pytest

from slimtorch.core.errors import DataNotFoundError
from slimtorch.data.sentences import sentences_of, split_sentences
from slimtorch.data.text import load_documents

SOURCES = ("gsm8k", "licenses")  # always present after setup (PyPI wheel, Debian base files)


def test_sentences_are_cut_from_prose_and_markup_is_left_out():
    text = (
        "Question: Tom has 3 apples. He buys 2 more at the store today. 1 2 3 4 5 6 7 8 9. "
        "See https://example.org for the whole text of it. <<2+3=5>>5 apples are left in the bag. "
        "The   bag is\n red. Then he goes home"
    )
    # GSM8K's field label dropped; the number run, the URL, the calculator markup and the
    # unfinished last sentence are left out; whitespace is collapsed
    assert sentences_of(text, 4, 40) == ["Tom has 3 apples.", "The bag is red."]
    assert sentences_of(text, 5, 40) == []


def test_split_is_document_disjoint_reproducible_and_real():
    a = split_sentences((50, 100, 300), seed=1, sources=SOURCES)
    b = split_sentences((50, 100, 300), seed=1, sources=SOURCES)
    assert a.test == b.test and a.counts() == {"calibration": 50, "selection": 100, "test": 300}
    assert a.info["disjoint"] is True
    assert not set(map(str.lower, a.test)) & set(map(str.lower, a.calibration + a.selection))
    # every test sentence is verbatim text of a document (after whitespace collapsing), no template
    corpus = " ".join(" ".join(d.text.split()) for d in load_documents(SOURCES))
    assert all(s in corpus for s in a.test[:50])
    assert len({s.split()[0] for s in a.test}) > 50  # varied openings, not subject x predicate
    with pytest.raises(DataNotFoundError, match="asked for"):
        split_sentences((50, 100, 10**6), sources=SOURCES)
