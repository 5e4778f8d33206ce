"""What the language-model recipe stages share (``gptq``, ``awq``, ``hqq``, ``rtn_weight_only``, ``wanda``, …).

Each stage is thin: check that the model is a causal LM, take the calibration
windows of the recipe's ``text`` data, call the method's public function in
place, time it (``calib_seconds``), and write the result with
:func:`~slimtorch.quantize.qlinear.save_quantized_lm` into the stage's folder
(``NN_label/model``: integer codes + scales/zeros for quantized layers, float
tensors otherwise; it reloads with ``load_quantized_lm``).

Resume (``slimtorch run --resume``): block-by-block methods keep their state in
``NN_label/calibration`` (:func:`slimtorch.core.blockwise.sequential`), so a
killed calibration continues after its last finished block; a stage that had
already finished reloads its saved folder instead of calibrating again (the
folder is written atomically and ``done.json`` records the config and the
calibration tokens it was made from).

It lives next to :mod:`slimtorch.quantize.qlinear` (whose files it writes), not in
:mod:`slimtorch.pipeline`, so the pruning, encoding and deployment packages use it
without importing the runner (``slimtorch.pipeline.lm`` re-exports it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from torch import nn

from slimtorch.core.config import FrozenConfig
from slimtorch.core.errors import ConfigError
from slimtorch.core.fileio import atomic_write_json
from slimtorch.core.stages import Context, StageResult, base_config, optional

# attributes the zoo / Hugging Face loaders attach that a reloaded model must keep
_KEEP_ATTRS = ("slimtorch_tokenizer", "slimtorch_spec", "example_input_shape", "input_dtype")


class LMStageFields(FrozenConfig):
    """Fields every language-model stage adds to its method's config.

    Attributes:
        calib_windows: use only the first N calibration windows of the recipe's text data
            (``None``: all of them).
        save: write the compressed model into the stage folder (``NN_label/model``); its
            size on disk is the size reported.
    """

    calib_windows: int | None = pydantic.Field(None, ge=1)
    save: bool = True


@dataclass(frozen=True, kw_only=True)
class LMMethodResult(StageResult):
    """A language-model method's stage: which method and config, the calibration it read and its time.

    ``reloaded``: a resumed run found the stage finished and reloaded its saved folder.
    ``resumed_after_block``: a resumed calibration continued after that block.
    """

    method: str
    config: dict[str, Any]
    calib_windows: int | None = optional()
    calib_tokens: int | None = optional()
    resumed_after_block: int | None = optional()
    calib_seconds: float
    reloaded: str | None = optional()


def method_config(cfg: FrozenConfig, method_cls: type[FrozenConfig]) -> FrozenConfig:
    """The method's own config (the stage's fields minus :class:`LMStageFields`)."""
    return base_config(cfg, method_cls)


def require_lm(ctx: Context) -> None:
    from slimtorch.measure.lm import is_causal_lm

    if not is_causal_lm(ctx.model):
        raise ConfigError(
            f"stage '{ctx.stage_name}' compresses causal language models; the model is a "
            f"{type(ctx.model).__name__} (use a zoo LM such as smollm2_135m or model: {{hf: DIR, task: causal-lm}})",
            field="model",
        )


def _fingerprint(method: str, mcfg: FrozenConfig, ids) -> str:
    h = hashlib.sha256(method.encode())
    h.update(mcfg.model_dump_json().encode())
    if ids is not None:
        h.update(ids.numpy().tobytes())
    return h.hexdigest()[:16]


def reload_into(old: nn.Module, folder: Path) -> nn.Module:
    """The model saved in ``folder``, with the loader's attributes of ``old`` (tokenizer, spec) carried over."""
    from slimtorch.quantize.qlinear import load_quantized_lm

    new = load_quantized_lm(folder)
    for attr in _KEEP_ATTRS:
        if hasattr(old, attr):
            setattr(new, attr, getattr(old, attr))
    return new


def save_stage_model(ctx: Context, folder: Path) -> Path:
    from slimtorch.quantize.qlinear import save_quantized_lm

    if folder.exists():  # only a resumed run gets here (a fresh run starts in an empty folder)
        shutil.rmtree(folder)
    return save_quantized_lm(ctx.model, folder, getattr(ctx.model, "slimtorch_tokenizer", None))


def run_lm_stage(
    ctx: Context,
    cfg: FrozenConfig,
    method: str,
    method_cls: type[FrozenConfig],
    fn: Callable[..., nn.Module],
    *,
    calibrated: bool,
    resumable: bool,
) -> None:
    """Run one language-model method as a recipe stage (see the module docstring).

    Args:
        fn: the public function: ``fn(model, config, ids, inplace=True[, checkpoint_dir=])`` when
            ``calibrated``, else ``fn(model, config, inplace=True)``.
        resumable: ``fn`` takes ``checkpoint_dir`` (block-by-block calibration).
    """
    require_lm(ctx)
    mcfg = method_config(cfg, method_cls)
    ids = None
    if calibrated:
        if ctx.text is None:
            raise ConfigError(
                f"stage '{ctx.stage_name}' ({method}) needs calibration text: set the recipe's "
                "data to {name: text} (see docs/llm.md)",
                field="data",
            )
        ids = ctx.text.calib_ids(cfg.calib_windows)
    stage_dir = ctx.stage_dir()
    model_dir, done_path, ckpt = stage_dir / "model", stage_dir / "done.json", stage_dir / "calibration"
    fp = _fingerprint(method, mcfg, ids)
    if ctx.resume and cfg.save and done_path.is_file() and model_dir.is_dir():
        done = json.loads(done_path.read_text())
        if done.get("fingerprint") == fp:
            ctx.model = reload_into(ctx.model, model_dir)
            ctx.record(LMMethodResult(**done["info"], reloaded=str(model_dir)))
            ctx.artifacts[ctx.stage_name] = model_dir
            if ctx.verbose:
                print(f"[{ctx.stage_name}] finished before: reloaded {model_dir}", flush=True)
            return
    info: dict[str, Any] = {"method": method, "config": mcfg.to_dict()}
    if ids is not None:
        info.update(calib_windows=int(ids.shape[0]), calib_tokens=int(ids.numel()))
    kwargs: dict[str, Any] = {"inplace": True}
    if resumable:
        kwargs["checkpoint_dir"] = ckpt
        progress = ckpt / "progress.json"
        if ctx.resume and progress.is_file():
            info["resumed_after_block"] = json.loads(progress.read_text()).get("done")
        elif ckpt.exists():  # a stale checkpoint of another config would refuse to load
            shutil.rmtree(ckpt)
    t0 = time.perf_counter()
    ctx.model = fn(ctx.model, mcfg, ids, **kwargs) if calibrated else fn(ctx.model, mcfg, **kwargs)
    info["calib_seconds"] = round(time.perf_counter() - t0, 3)
    ctx.record(LMMethodResult(**info))
    if cfg.save:
        ctx.artifacts[ctx.stage_name] = save_stage_model(ctx, model_dir)
        atomic_write_json(done_path, {"fingerprint": fp, "info": info})
        shutil.rmtree(ckpt, ignore_errors=True)  # the saved folder is the resumable state now
