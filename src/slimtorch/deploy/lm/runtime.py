"""Run an exported decoder with ONNX Runtime: one forward with a KV cache, and a module for perplexity.

The KV cache stays in ONNX Runtime's own tensors between steps (``OrtValue`` via
I/O binding), so a decode step moves no cache through numpy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimtorch.core.errors import FormatError
from slimtorch.deploy.lm.graph import FORMAT


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OnnxCausalLM:
    """An exported decoder folder (:func:`~slimtorch.deploy.lm.export_onnx`) loaded in ONNX Runtime.

    Args:
        directory: the folder with ``model.onnx`` and ``slimtorch_onnx.json``.
        threads: intra-op threads (default: ONNX Runtime's choice, all cores).

    Raises:
        FormatError: not an exported decoder folder (names the missing or wrong file).
    """

    def __init__(self, directory: str | os.PathLike, threads: int | None = None):
        self.directory = Path(directory)
        meta_path = self.directory / "slimtorch_onnx.json"
        if not meta_path.is_file() or not (self.directory / "model.onnx").is_file():
            raise FormatError(
                f"{self.directory} is not an exported language model (needs model.onnx and "
                "slimtorch_onnx.json; write one with slimtorch.deploy.lm.export_onnx)"
            )
        try:
            self.meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise FormatError(f"{meta_path} is not valid JSON ({exc})") from None
        if self.meta.get("format") != FORMAT:
            raise FormatError(f"{meta_path}: format {self.meta.get('format')!r}, expected {FORMAT!r}")
        self.session = _session(self.directory / "model.onnx", threads)
        self.layers, self.kv_heads, self.head_dim = self.meta["layers"], self.meta["kv_heads"], self.meta["head_dim"]
        self.vocab, self.max_positions = self.meta["vocab"], self.meta["max_positions"]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._tokenizer = None

    @property
    def tokenizer(self):
        """The tokenizer saved beside the graph (``None`` if none was)."""
        if self._tokenizer is None and (self.directory / "tokenizer_config.json").is_file():
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.directory)
        return self._tokenizer

    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]

    def empty_past(self, batch: int) -> dict:
        import onnxruntime as ort

        empty = np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=np.float32)
        return {name: ort.OrtValue.ortvalue_from_numpy(empty) for name in self.past_names()}

    def step(self, input_ids: np.ndarray, attention_mask: np.ndarray, past: dict) -> tuple[np.ndarray, dict]:
        """One forward: ``(logits (B, S, V), present cache)``; ``past`` maps input names to ``OrtValue``.

        ``attention_mask`` is ``(B, past + S)`` with each row's ones first (right padding).
        """
        if attention_mask.shape[1] > self.max_positions:
            raise ValueError(
                f"{attention_mask.shape[1]} positions exceed the exported rotary cache "
                f"({self.max_positions}); export with a larger max_positions"
            )
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids, dtype=np.int64))
        binding.bind_cpu_input("attention_mask", np.ascontiguousarray(attention_mask, dtype=np.int64))
        for name, value in past.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        outs = binding.get_outputs()
        present = {
            f"past_key_values.{n.split('.')[1]}.{n.split('.')[2]}": v for n, v in zip(self.output_names[1:], outs[1:])
        }
        return outs[0].numpy(), present

    def bind_cache(self, batch: int, length: int):
        """An I/O binding whose KV cache is one preallocated ``(batch, kv_heads, length, head_dim)`` buffer per tensor.

        Past and present are bound to the same buffer, so ``GroupQueryAttention`` writes each
        new key / value in place (its shared-buffer mode) and a decode step rebinds only the
        token ids and the mask: no cache copy or allocation per token.
        """
        import onnxruntime as ort

        if length > self.max_positions:
            raise ValueError(
                f"{length} positions exceed the exported rotary cache ({self.max_positions}); "
                "export with a larger max_positions"
            )
        binding = self.session.io_binding()
        shape = (batch, self.kv_heads, length, self.head_dim)
        for name in self.output_names[1:]:
            _, layer, kv = name.split(".")
            buf = ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype=np.float32))
            binding.bind_ortvalue_input(f"past_key_values.{layer}.{kv}", buf)
            binding.bind_ortvalue_output(name, buf)
        return binding

    def step_bound(self, binding, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """One forward on a :meth:`bind_cache` binding: logits ``(B, S, V)``; the cache is updated in place."""
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids, dtype=np.int64))
        binding.bind_cpu_input("attention_mask", np.ascontiguousarray(attention_mask, dtype=np.int64))
        binding.bind_output("logits", "cpu")  # rebound every step: its shape changes from prefill to decode
        self.session.run_with_iobinding(binding)
        outs = binding.get_outputs()
        return next(o for o in outs if o.shape()[-1] == self.vocab and len(o.shape()) == 3).numpy()

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, S, V)`` of full sequences (no cache), as a float tensor."""
        ids = input_ids.numpy() if isinstance(input_ids, torch.Tensor) else np.asarray(input_ids)
        logits, _ = self.step(ids, np.ones_like(ids), self.empty_past(ids.shape[0]))
        return torch.from_numpy(logits)

    def as_module(self) -> nn.Module:
        """An ``nn.Module`` view (``ids -> logits``) for :func:`slimtorch.measure.perplexity.perplexity`."""
        return _OnnxModule(self)


class _OnnxModule(nn.Module):
    def __init__(self, lm: OnnxCausalLM):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm.logits(input_ids)
