"""``measure(...)``: one record of everything slimtorch reports about a model."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from slimtorch.io.fold import fold
from slimtorch.io.model_file import model_to_bytes
from slimtorch.measure.counts import count_nonzero, count_parameters, layer_sparsity
from slimtorch.measure.latency import measure_latency
from slimtorch.measure.macs import count_macs, layer_macs


@dataclass
class MeasureRecord:
    """Measurements of one model state. Sizes in bytes, latency in milliseconds.

    ``dense_bytes`` is fp32 parameters + buffers; ``file_bytes`` the slimtorch model
    file (sparse-aware safetensors) it would save to; ``artifact_bytes`` the size of
    a given artifact on disk (e.g. a ``.slim`` or ``.onnx`` file) when one is passed.
    """

    name: str
    params: int
    nonzero: int
    macs: int
    sparse_macs: int
    dense_bytes: int
    file_bytes: int
    artifact_bytes: int | None = None
    artifact: str | None = None
    accuracy: float | None = None
    loss: float | None = None
    agreement: float | None = None
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        """The size that counts: the artifact if there is one, else the model file."""
        return self.artifact_bytes if self.artifact_bytes is not None else self.file_bytes

    def to_dict(self, layers: bool = True) -> dict[str, Any]:
        d = asdict(self)
        d["size_bytes"] = self.size_bytes
        if not layers:
            d.pop("layers")
        return d


def measure(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    name: str = "model",
    data: Dataset | None = None,
    reference: nn.Module | None = None,
    artifact: str | os.PathLike | None = None,
    latency_batches: tuple[int, ...] = (1, 32),
    threads: int | None = None,
    latency_runs: int = 30,
) -> MeasureRecord:
    """Measure ``model``.

    Args:
        example_input: one input batch (its first item is used for latency batches).
        data: test data → top-1 accuracy and loss (skipped for unlabelled data, whose
            targets are ``slimtorch.data.UNLABELLED``).
        reference: the model before compression → top-1 agreement on ``data``.
        artifact: a file whose size on disk is reported.
        latency_batches: batch sizes to time (empty: skip latency).
        threads: thread count for latency (default: current).
    """
    from slimtorch.train.evaluate import agreement, evaluate

    flat = fold(model).eval()
    x1 = example_input[:1]
    per_layer_macs = layer_macs(flat, x1)
    sparsity = layer_sparsity(flat)
    layers: dict[str, dict[str, Any]] = {}
    for lname, info in sparsity.items():
        mod = lname.rsplit(".", 1)[0]
        layers[lname] = {**info, **per_layer_macs.get(mod, {})}
    dense_bytes = sum(t.numel() * 4 for t in flat.state_dict().values() if t.is_floating_point())
    rec = MeasureRecord(
        name=name,
        params=count_parameters(flat),
        nonzero=count_nonzero(flat),
        macs=count_macs(flat, x1),
        sparse_macs=sum(v["sparse_macs"] for v in per_layer_macs.values()),
        dense_bytes=dense_bytes,
        file_bytes=len(model_to_bytes(flat)),
        layers=layers,
    )
    if artifact is not None:
        rec.artifact = str(artifact)
        rec.artifact_bytes = Path(artifact).stat().st_size
    if data is not None:
        from slimtorch.data.photos import is_unlabelled

        if not is_unlabelled(data):  # label-free data (photos): agreement only
            res = evaluate(flat, data)
            rec.accuracy, rec.loss = res.accuracy, res.loss
        if reference is not None:
            rec.agreement = agreement(flat, reference, data)["top1_agreement"]
    for bs in latency_batches:
        rec.latency[f"b{bs}"] = measure_latency(flat, x1, bs, threads=threads, runs=latency_runs).to_dict()
    return rec
