"""The model matrix (peft ``test_custom_models`` style): user-style models x every technique.

Each row of :data:`MODELS` is a tiny model written the way users write them; each
entry of :data:`TECHNIQUES` applies one slimtorch technique and checks its result
(output close to the float model where the technique should keep it, files that
round-trip, something actually changed). A cell is ``ok`` or the name of a
documented slimtorch error (``UnsupportedModelError`` ...) whose message names
the layer. Adding a model or a technique adds a row, not test code.

Print the table of ``docs/model_matrix.md``::

    .venv/bin/python -m tests.models.matrix
"""

from __future__ import annotations

import copy
import io
import tempfile
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from slimtorch.core.errors import SlimtorchError

# ---------------------------------------------------------------- models


class ShapeCheckCNN(nn.Module):
    """A CNN whose forward checks its input (breaks FX tracing)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        if x.shape[1:] != (1, 16, 16):
            raise ValueError(f"expected (N, 1, 16, 16), got {tuple(x.shape)}")
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.bn(self.conv2(x))), 2)
        return self.head(F.relu(self.fc(x.flatten(1))))


class LSTMNet(nn.Module):
    def __init__(self, batch_first: bool = True, bidirectional: bool = False):
        super().__init__()
        self.batch_first = batch_first
        self.lstm = nn.LSTM(8, 16, 2, batch_first=batch_first, bidirectional=bidirectional)
        self.head = nn.Linear(16 * (2 if bidirectional else 1), 4)

    def forward(self, x):  # x: (N, T, 8)
        out, _ = self.lstm(x if self.batch_first else x.transpose(0, 1))
        last = out[:, -1] if self.batch_first else out[-1]
        return self.head(last)


class GRUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(8, 16, 1, batch_first=True, bidirectional=True)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out.mean(1))


class AttentionBlock(nn.Module):
    """Pre-norm self-attention + MLP block, mean-pooled to 4 logits."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 32), nn.GELU(), nn.Linear(32, d))
        self.head = nn.Linear(d, 4)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(1))


class ResDepthwiseGrouped(nn.Module):
    """Stem, depthwise 3x3, grouped 1x1 (2 groups), residual add, BN, pooled head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 16, 1, groups=2)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        x = x + self.pw(F.relu(self.bn1(self.dw(x))))
        return self.head(x.mean((2, 3)))


class OwnParameter(nn.Module):
    """A learned per-feature scale and bias of its own (``nn.Parameter``) around Linear layers."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(16))
        self.shift = nn.Parameter(torch.zeros(16))
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x * self.scale + self.shift)))


class TiedWeights(nn.Module):
    """Token ids -> logits over the vocabulary, the output layer tied to the embedding."""

    def __init__(self, vocab: int = 64, d: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.mix = nn.Linear(d, d)
        self.out = nn.Linear(d, vocab, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids):
        return self.out(torch.tanh(self.mix(self.embed(ids).mean(1))))


def hf_bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    from slimtorch.models.hf import HFSequenceClassifier

    cfg = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=4,
    )
    return HFSequenceClassifier(BertForSequenceClassification(cfg).eval(), pad_id=0)


class CausalLMLogits(nn.Module):
    """A user's wrapper around a Hugging Face causal LM: ids -> last position's logits."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, ids):
        return self.lm(input_ids=ids).logits[:, -1]


def hf_llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=16,
    )
    return CausalLMLogits(LlamaForCausalLM(cfg).eval())


def _images(n, c=1, s=16):
    return torch.randn(n, c, s, s)


def _seq(n):
    return torch.randn(n, 6, 8)


def _ids(n):
    return torch.randint(1, 64, (n, 8))


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int], torch.Tensor]
    classes: int = 4


MODELS: list[Case] = [
    Case("cnn_shape_check", ShapeCheckCNN, _images),
    Case("lstm_batch_first", LSTMNet, _seq),
    Case("lstm_time_first_bidir", lambda: LSTMNet(batch_first=False, bidirectional=True), _seq),
    Case("gru_bidir", GRUNet, _seq),
    Case("attention_block", AttentionBlock, lambda n: torch.randn(n, 6, 16)),
    Case("residual_depthwise_grouped", ResDepthwiseGrouped, lambda n: _images(n, 3)),
    Case("own_parameter", OwnParameter, lambda n: torch.randn(n, 16)),
    Case("tied_weights", TiedWeights, _ids, classes=64),
    Case("hf_bert", hf_bert, _ids),
    Case("hf_llama", hf_llama, _ids, classes=64),
]

# ---------------------------------------------------------------- techniques


def _out(model, x):
    with torch.no_grad():
        return model.eval()(x).float()


def _cos(a, b) -> float:
    return float(F.cosine_similarity(a.flatten(1), b.flatten(1)).mean())


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def _changed(before: nn.Module, after: nn.Module) -> bool:
    from slimtorch.io.fold import effective_state_dict

    a, b = effective_state_dict(before), effective_state_dict(after)
    return set(a) != set(b) or any(a[k].shape != b[k].shape or not torch.equal(a[k], b[k]) for k in a)


def _file_round_trip(case, model, x, tmp: Path) -> None:
    """The transformed model saved and loaded into a fresh build of the user's class computes the same."""
    from slimtorch.io import load_model, save_model

    save_model(model, tmp / "m.safetensors")
    loaded = load_model(tmp / "m.safetensors", model=case.build())
    _check(torch.allclose(_out(loaded, x), _out(model, x), atol=1e-5), "model file does not round-trip")


def unstructured(case, model, x, tmp):
    from slimtorch.prune import PruneConfig, prune

    ref = copy.deepcopy(model)
    model = prune(model, PruneConfig(sparsity=0.5, protect=False))
    _check(_changed(ref, model), "nothing was pruned")
    _check(bool(torch.isfinite(_out(model, x)).all()), "non-finite output")
    _file_round_trip(case, model, x, tmp)


def nm_2_4(case, model, x, tmp):
    from slimtorch.prune import PruneConfig, prune

    ref = copy.deepcopy(model)
    model = prune(model, PruneConfig(pattern="2:4"))
    _check(_changed(ref, model), "nothing was pruned")
    _file_round_trip(case, model, x, tmp)


def structured(case, model, x, tmp):
    from slimtorch.prune.structured import prune_channels

    params = sum(p.numel() for p in model.parameters())
    model = prune_channels(model, {"ratio": 0.25}, x[:2])
    _check(sum(p.numel() for p in model.parameters()) < params, "no channel was removed")
    _check(_out(model, x).shape[0] == x.shape[0], "output lost its batch")
    _file_round_trip(case, model, x, tmp)


def fake_quant_ptq(case, model, x, tmp):
    from slimtorch.quantize import QuantConfig, quantize_model

    ref = _out(model, x)
    q = quantize_model(model, QuantConfig(weight_bits=8, act_bits=8), calib_data=TensorDataset(x))
    _check(_cos(_out(q, x), ref) > 0.95, f"8-bit fake-quant output far from float (cosine {_cos(_out(q, x), ref):.3f})")


def qat(case, model, x, tmp):
    """Fake-quantized (8/8) training: gradients flow through the straight-through estimator."""
    from slimtorch.quantize import QuantConfig, quantize_model
    from slimtorch.train import TrainConfig, fit

    y = _out(model, x).argmax(1)
    q = quantize_model(model, QuantConfig(weight_bits=8, act_bits=8), calib_data=TensorDataset(x))
    before = copy.deepcopy(q)
    fit(q, TensorDataset(x, y), TrainConfig(epochs=1, batch_size=8, optimizer={"lr": 0.01}), verbose=False)
    _check(_changed(before, q), "QAT did not update the weights")
    _check(bool(torch.isfinite(_out(q, x)).all()), "non-finite output after QAT")


def kmeans(case, model, x, tmp):
    from slimtorch.quantize import KMeansConfig, kmeans_share

    ref = _out(model, x)
    shared = kmeans_share(model, KMeansConfig(bits=4))
    _check(_changed(model, shared), "no layer was shared")
    _check(_cos(_out(shared, x), ref) > 0.9, "4-bit shared weights far from float")
    back = copy.deepcopy(case.build())
    from slimtorch.io import load_model, save_model

    save_model(shared, tmp / "k.safetensors")
    _check(torch.equal(_out(load_model(tmp / "k.safetensors", model=back), x), _out(shared, x)), "file differs")


def slim_round_trip(case, model, x, tmp):
    import slimtorch
    from slimtorch.encode.model import load_packed

    slimtorch.save(model, tmp / "m.slim")
    back = load_packed(tmp / "m.slim", copy.deepcopy(model))
    _check(torch.equal(_out(back, x), _out(model, x)), ".slim decode differs")


def _int8(mode):
    def run(case, model, x, tmp):
        from slimtorch.deploy import Int8Config, to_int8

        target = {"min_agreement": None, "max_kl": None, "min_cosine": 0.9}
        q = to_int8(
            model, Int8Config(mode=mode, target=target, max_float_layers=0, calib_batch_size=8), x, out_dir=tmp / mode
        )
        cos = _cos(q.runner((x,)), _out(model, x))
        _check(cos > 0.9, f"INT8 output far from float (cosine {cos:.3f})")
        _check(q.info.get("quantized_layers", 1) > 0, "no layer was quantized")

    run.__name__ = f"int8_{mode}"
    return run


def distill(case, model, x, tmp):
    from slimtorch.distill import DistillConfig
    from slimtorch.distill import distill as run

    teacher = copy.deepcopy(model).eval()
    y = _out(teacher, x).argmax(1)
    before = copy.deepcopy(model)
    cfg = DistillConfig(train={"epochs": 1, "batch_size": 8, "optimizer": {"lr": 0.01}})
    student = run(model, cfg, teacher, TensorDataset(x, y), verbose=False)
    _check(_changed(before, student), "distillation did not train the student")


def onnx_export(case, model, x, tmp):
    from slimtorch.export.onnx import export_onnx

    parity = export_onnx(model, x[:2], tmp / "m.onnx", check_inputs=x, verbose=False)
    scale = float(_out(model, x).abs().max()) or 1.0
    _check(parity.max_abs_diff <= 1e-3 * max(scale, 1.0), f"ONNX Runtime differs by {parity.max_abs_diff:.3g}")


TECHNIQUES: list[Callable] = [
    unstructured,
    nm_2_4,
    structured,
    fake_quant_ptq,
    qat,
    kmeans,
    slim_round_trip,
    _int8("static"),
    _int8("dynamic"),
    distill,
    onnx_export,
]


def run_cell(case: Case, technique: Callable) -> tuple[str, str]:
    """``("ok", "")`` or ``(ErrorType, message)``; anything but a slimtorch error propagates."""
    torch.manual_seed(0)
    model = case.build().eval()
    x = case.inputs(24)
    with tempfile.TemporaryDirectory() as tmp, redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        try:
            technique(case, model, x, Path(tmp))
        except SlimtorchError as exc:
            return type(exc).__name__, str(exc).splitlines()[0]
    return "ok", ""


def table() -> str:
    """The Markdown table of docs/model_matrix.md: one row per model, one column per technique."""
    names = [t.__name__ for t in TECHNIQUES]
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    notes = []
    for case in MODELS:
        cells = []
        for t in TECHNIQUES:
            status, msg = run_cell(case, t)
            if status != "ok":
                notes.append(f"* **{case.name} x {t.__name__}**: `{status}`: {msg[:300]}")
                status = f"{status} [{len(notes)}]"
            cells.append(status)
        lines.append(f"| {case.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


if __name__ == "__main__":
    print(table())
