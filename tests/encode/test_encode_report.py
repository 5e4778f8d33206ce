"""Per-layer compression table (Deep Compression, Tables 2-3 style)."""

import numpy as np
import pytest

from slimtorch.encode import compression_report, pack_state, render_report
from tests.encode.encode_strategies import make_shared


@pytest.fixture(scope="module")
def rows():
    w = make_shared(0, (100, 200), 32, 0.1)
    state = {"fc.weight": w, "fc.bias": np.linspace(-1, 1, 100).astype(np.float32)}
    data = pack_state(state, {"model": "mlp"})
    return compression_report(data), w, data


def test_rows_match_the_tensors(rows):
    table, w, data = rows
    fc, bias, total = table
    assert fc["layer"] == "fc.weight" and fc["#weights"] == 20_000
    assert fc["weights kept %"] == pytest.approx(100 * w.nnz / w.numel)
    assert fc["weight bits (P+Q)"] == 5.0  # 32 shared values
    assert 0 < fc["weight bits (P+Q+H)"] <= 5.0  # entropy coding never loses to 5 fixed bits here
    assert fc["index bits"] > 0 and fc["ratio"] > 10
    assert bias["coding"] == "raw-float32" and bias["weights kept %"] == 100.0
    assert total["#weights"] == 20_100 and total["bytes"] == len(data)
    assert total["ratio"] == pytest.approx(4 * 20_100 / len(data))


def test_payload_bytes_add_up_to_less_than_the_file(rows):
    table, _, data = rows
    assert sum(r["bytes"] for r in table[:-1]) < len(data)


def test_render_has_header_and_one_line_per_row(rows):
    table, _, _ = rows
    text = render_report(table)
    lines = text.splitlines()
    assert lines[0].startswith("| layer") and "weight bits (P+Q+H)" in lines[0]
    assert len(lines) == 2 + len(table) and "fc.weight" in text and "total" in lines[-1]
