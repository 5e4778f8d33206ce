"""Dynamic INT8 of recurrent layers and embeddings: LSTM on ONNX Runtime, GRU / LSTM / Embedding on fbgemm."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from slimtorch.deploy import Int8Config, to_int8
from slimtorch.export.onnx import export_onnx

COSINE = {"min_agreement": None, "max_kl": None, "min_cosine": 0.99}


class LstmEncoder(nn.Module):
    """``(N, T, 16) -> (N, 24)``: a stacked LSTM, last hidden state, a Linear (a speaker-encoder shape)."""

    def __init__(self, batch_first: bool = True):
        super().__init__()
        self.batch_first = batch_first
        self.lstm = nn.LSTM(16, 32, 2, batch_first=batch_first)
        self.linear = nn.Linear(32, 24)

    def forward(self, x):
        if not self.batch_first:
            x = x.transpose(0, 1)
        _, (h, _) = self.lstm(x)
        return self.linear(h[-1])


class GruTagger(nn.Module):
    """``ids (N, L) -> logits (N, 5)``: Embedding, bidirectional GRU (time first), Linear."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(500, 16)
        self.gru = nn.GRU(16, 32, 1, bidirectional=True)
        self.fc = nn.Linear(64, 5)

    def forward(self, ids):
        h, _ = self.gru(self.emb(ids).transpose(0, 1))
        return self.fc(h[-1])


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_becomes_dynamic_quantize_lstm_with_per_channel_weights(tmp_path, batch_first):
    torch.manual_seed(0)
    model = LstmEncoder(batch_first).eval()
    x = torch.randn(16, 12, 16)
    cfg = Int8Config(mode="dynamic", target=COSINE, max_float_layers=0)
    q = to_int8(model, cfg, x, out_dir=tmp_path)
    ops = _ops(q.path)
    assert ops.count("DynamicQuantizeLSTM") == 2 and "LSTM" not in ops  # both layers, none float
    proto = onnx.load(str(q.path))
    node = next(n for n in proto.graph.node if n.op_type == "DynamicQuantizeLSTM")
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert inits[node.input[8]].shape == (1, 4 * 32)  # input-weight scales: one per gate row
    assert q.info["fidelity_checked"]["cosine_mean"] > 0.99
    export_onnx(model, x[:2], tmp_path / "fp32.onnx", check=False)
    assert q.size_bytes < 0.45 * (tmp_path / "fp32.onnx").stat().st_size  # weights are int8 on disk


def test_gru_stays_float_on_onnxruntime_and_says_so(tmp_path):
    torch.manual_seed(0)
    model = GruTagger().eval()
    ids = torch.randint(0, 500, (16, 10))
    q = to_int8(model, Int8Config(mode="dynamic", target=COSINE), ids, out_dir=tmp_path)
    assert q.info["float_recurrent"] == ["gru[layer 0]"]
    assert "gru[layer 0]" in q.float_layers
    assert "GRU" in _ops(q.path)
    emb = next(n for n in onnx.load(str(q.path)).graph.node if n.op_type == "Gather" and "emb" in n.name)
    assert emb.input[0] == "emb.weight_quantized"  # the embedding table is stored int8


def test_fbgemm_backend_quantizes_gru_lstm_and_embedding():
    torch.manual_seed(0)
    for model, x in [
        (GruTagger().eval(), torch.randint(0, 500, (16, 10))),
        (LstmEncoder().eval(), torch.randn(16, 12, 16)),
    ]:
        fp32_bytes = sum(p.numel() * 4 for p in model.parameters())
        q = to_int8(model, Int8Config(mode="dynamic", backend="torch_fx", target=COSINE), x)
        assert q.size_bytes < 0.5 * fp32_bytes
        assert q.info["fidelity_checked"]["cosine_mean"] > 0.99


def test_auto_backend_weighs_every_backend_against_fp32_on_onnxruntime(tmp_path, capsys):
    torch.manual_seed(0)
    model = LstmEncoder().eval()
    q = to_int8(
        model, Int8Config(mode="dynamic", backend="auto", target=COSINE), torch.randn(16, 12, 16), out_dir=tmp_path
    )
    auto = q.info["auto"]
    assert {"onnxruntime", "torch_fx", "ort_fp32"} <= set(auto["latency_ms"])
    assert auto["picked"] in auto["latency_ms"]
    others = [v for k, v in auto["latency_ms"].items() if k in auto["meets_target"]]
    if auto["picked"] == "ort_fp32":  # kept float: said so, and only because no faithful INT8 was faster
        assert q.mode == "fp32" and "keeping fp32" in capsys.readouterr().err
        assert all(v >= auto["latency_ms"]["ort_fp32"] for v in others)
    else:
        assert auto["latency_ms"][auto["picked"]] <= auto["latency_ms"]["ort_fp32"]


def test_float_computed_layers_still_store_int8_weights_when_the_target_holds(tmp_path):
    """A GRU has no INT8 kernel on ONNX Runtime: it computes in float but its W / R are stored int8."""
    torch.manual_seed(0)
    model = GruTagger().eval()
    ids = torch.randint(0, 500, (16, 10))
    base = {"mode": "dynamic", "target": COSINE}
    q = to_int8(model, Int8Config(**base), ids, out_dir=tmp_path / "w8")
    plain = to_int8(model, Int8Config(**base, float_weights_int8=False), ids, out_dir=tmp_path / "plain")
    assert sorted(q.info["weights_int8_compute_float"]) == ["gru[layer 0].R", "gru[layer 0].W"]
    proto = onnx.load(str(q.path))
    gru = next(n for n in proto.graph.node if n.op_type == "GRU")
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    assert producers[gru.input[1]] == producers[gru.input[2]] == "DequantizeLinear"
    assert q.size_bytes < plain.size_bytes - 3 * 4 * 32 * (16 + 32)  # W and R of both directions: 4x smaller
    assert q.info["fidelity_checked"]["cosine_mean"] > 0.99
