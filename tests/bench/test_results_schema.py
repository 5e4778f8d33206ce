"""Every top-level key of a results file is one its benchmark script writes (no hand-added keys).

Figures in the docs come from ``bench/results/*.json``; a key typed into a file by hand
(a note, an old run pasted in) would be rendered as if measured. Each file names the
script(s) that write it; a key counts as written when the script's source has it as a
string literal or a keyword argument (``"key"``, ``'key'``, ``key=``), or it matches a
pattern the script builds (``seconds_{part}``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
WRITERS = {
    "auto": ["auto.py"],
    "deep_compression": ["deep_compression.py"],
    "distill": ["distill.py"],
    "distributed": ["distributed.py"],
    "fuzz": ["fuzz.py"],
    "int8": ["int8.py"],
    "llm": ["llm.py", "llm_deploy.py"],
    "llm_sparsegpt_select": ["llm_sparsegpt_select.py"],
    "pruning": ["pruning.py"],
    "quantization": ["quantization.py"],
    "structured": ["structured.py"],
    "user_models": ["user_models.py"],
    "run_all": ["run_all.py"],
}
RESULTS = sorted((BENCH / "results").glob("*.json"))


def written(key: str, source: str) -> bool:
    return bool(re.search(r"""["']%s["']|\b%s=""" % (re.escape(key), re.escape(key)), source))


def test_every_results_file_has_a_writer():
    assert RESULTS, "no results files"
    assert not [p.name for p in RESULTS if p.stem not in WRITERS]


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_every_top_level_key_is_written_by_its_script(path):
    source = "".join((BENCH / s).read_text() for s in WRITERS.get(path.stem, []))
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    unwritten = [k for k in data if not written(k, source)]
    assert not unwritten, f"{path.name}: keys no script writes (hand edits?): {unwritten}"


def test_the_check_catches_a_hand_added_key():
    src = 'RESULT["minilm"] = rows\nresults.update(model="x")\n'
    assert written("minilm", src) and written("model", src)
    assert not written("earlier_hinton_runs", src) and not written("mini", src)
