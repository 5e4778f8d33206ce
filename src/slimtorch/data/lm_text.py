"""The ``text`` dataset of recipes: calibration windows and a test stream for a causal language model.

A recipe names it like any dataset::

    data:
      name: text
      kwargs: {window: 512, calib_windows: 32, test_windows: 16}

The corpus is :func:`slimtorch.data.text.split_tokens` (real English that ships
offline; whole document groups per split, so calibration and test never share a
text). Tokens need the model's tokenizer, so the runner builds the model first and
then the text (:func:`lm_text`). Calibration is ``calib_windows`` windows of
``window`` tokens drawn at seeded random offsets of the calibration stream (as
GPTQ/AWQ do); perplexity is measured on the first ``test_windows`` windows of the
test stream (``stride`` below ``window``: overlapping windows, each scoring only
its new tokens).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import torch
from torch.utils.data import TensorDataset

from slimtorch.core.config import FrozenConfig
from slimtorch.core.errors import ConfigError
from slimtorch.data.text import SOURCES


class TextDataConfig(FrozenConfig):
    """``data.kwargs`` of the ``text`` dataset.

    Attributes:
        sources: which offline corpora (``gsm8k``, ``licenses``, ``fortunes``, ``jargon``).
        fractions: share of document groups for calibration / selection / test.
        seed: the split's shuffle (and the calibration windows' offsets).
        window: tokens per calibration window and per perplexity window.
        stride: step between perplexity windows (``None``: ``window``, disjoint windows).
        calib_windows: calibration windows (a stage may use fewer: ``calib_windows`` there).
        test_windows: perplexity windows of the test stream (``None``: all of them; fewer is faster).
    """

    sources: list[str] = pydantic.Field(default_factory=lambda: list(SOURCES), min_length=1)
    fractions: tuple[float, float, float] = (0.4, 0.2, 0.4)
    seed: int = 0
    window: int = pydantic.Field(512, ge=2)
    stride: int | None = pydantic.Field(None, ge=1)
    calib_windows: int = pydantic.Field(32, ge=1)
    test_windows: int | None = pydantic.Field(16, ge=1)

    @pydantic.field_validator("sources")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in SOURCES]
        if bad:
            raise ValueError(f"unknown text source {bad[0]!r}; choose from {', '.join(SOURCES)}")
        return v

    @pydantic.model_validator(mode="after")
    def _stride(self) -> TextDataConfig:
        if self.stride is not None and self.stride > self.window:
            raise ConfigError(
                f"invalid value for 'stride': at most window ({self.window}), got {self.stride}", field="stride"
            )
        return self


@dataclass
class LMText:
    """Token ids a language-model recipe uses: calibration windows and the test stream."""

    calibration: torch.Tensor  # (N, window) int64
    test: torch.Tensor  # 1-D int64, already cut to what perplexity evaluates
    window: int
    stride: int
    test_windows: int | None
    info: dict[str, Any] = field(default_factory=dict)

    def calib_ids(self, n: int | None = None) -> torch.Tensor:
        """The first ``n`` calibration windows (all when ``None``)."""
        if n is not None and n > len(self.calibration):
            raise ConfigError(
                f"calib_windows {n} > the {len(self.calibration)} windows the data provides "
                "(raise data.kwargs.calib_windows)",
                field="calib_windows",
            )
        return self.calibration if n is None else self.calibration[:n]


def _test_tokens(stream: torch.Tensor, window: int, stride: int, count: int | None) -> torch.Tensor:
    if count is None:
        return stream
    return stream[: window + (count - 1) * stride]


def lm_text(
    tokenizer, config: TextDataConfig | dict | None = None, calib_cap: int | None = None, test_cap: int | None = None
) -> LMText:
    """Calibration windows and test tokens for ``tokenizer``'s model.

    Args:
        calib_cap / test_cap: the recipe's ``data.calib_size`` / ``data.test_subset`` (caps on
            the window counts, as for every dataset).
    """
    from slimtorch.data.text import split_tokens, windows

    cfg = config if isinstance(config, TextDataConfig) else TextDataConfig.from_dict(config or {}, "data.kwargs")
    splits = split_tokens(tokenizer, tuple(cfg.sources), tuple(cfg.fractions), seed=cfg.seed)
    n_calib = min(cfg.calib_windows, calib_cap) if calib_cap else cfg.calib_windows
    n_test = cfg.test_windows
    if test_cap:
        n_test = min(n_test, test_cap) if n_test else test_cap
    stride = cfg.stride or cfg.window
    if splits.calibration.numel() < cfg.window:
        raise ConfigError(
            f"the calibration text ({splits.calibration.numel()} tokens) is shorter than one window "
            f"of {cfg.window}; add sources or lower data.kwargs.window",
            field="data.kwargs.window",
        )
    fit = max(0, (splits.test.numel() - cfg.window) // stride + 1)
    if fit == 0:
        raise ConfigError(
            f"the test text ({splits.test.numel()} tokens) is shorter than one window of "
            f"{cfg.window}; add sources or lower data.kwargs.window",
            field="data.kwargs.window",
        )
    n_test = min(n_test, fit) if n_test else None
    calib = windows(splits.calibration, cfg.window, n_calib, seed=cfg.seed)
    test = _test_tokens(splits.test, cfg.window, stride, n_test)
    info = {
        **splits.info,
        "window": cfg.window,
        "stride": stride,
        "calib_windows": n_calib,
        "calib_tokens": int(calib.numel()),
        "test_windows": n_test if n_test else fit,
        "test_tokens": int(test.numel()),
    }
    return LMText(calib, test, cfg.window, stride, n_test, info)


def tokenizer_of(model, source: str | os.PathLike | None = None):
    """The tokenizer that belongs to ``model``.

    Looks at the zoo's ``model.slimtorch_tokenizer``, then the model's Hugging Face
    directory (``model.slimtorch_spec["hf"]``, or ``source``).

    Raises:
        ConfigError: none found (says where a tokenizer must be).
    """
    tok = getattr(model, "slimtorch_tokenizer", None)
    if tok is not None:
        return tok
    spec = getattr(model, "slimtorch_spec", None) or {}
    folder = source or (spec.get("hf") if isinstance(spec, dict) else None)
    if folder is not None and Path(folder).is_dir():
        from transformers import AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, TypeError):
            tok = None
        if tok is not None:
            model.slimtorch_tokenizer = tok
            return tok
    raise ConfigError(
        f"{type(model).__name__} has no tokenizer: text data needs the model's tokenizer files "
        "(tokenizer.json / tokenizer_config.json) in its Hugging Face directory",
        field="data",
    )


def load_text(tokenizer=None, **kwargs) -> tuple[TensorDataset, TensorDataset]:
    """``get_dataset("text", tokenizer=tok, ...)``: (calibration windows, test windows) as datasets of ids.

    Recipes do not call this (the runner hands the model's tokenizer to :func:`lm_text`);
    it is here so ``text`` is a dataset like the others for Python users.
    """
    if tokenizer is None:
        raise ConfigError(
            "the 'text' dataset needs a tokenizer: use it in a recipe whose model is a causal "
            "language model, or call slimtorch.data.lm_text.lm_text(tokenizer, ...)",
            field="data",
        )
    t = lm_text(tokenizer, kwargs)
    n = t.test.numel() // t.window
    return TensorDataset(t.calibration), TensorDataset(t.test[: n * t.window].view(n, t.window))
