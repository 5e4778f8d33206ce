"""Every public transform, one table, the same assertions (issue 19; docs/api.md).

A row is (technique, tiny model, call): adding a technique adds a row, not test
code (peft's ``tests/test_custom_models.py`` style). Each row runs once per
module; the tests below check, for every row:

* it returns a model (an ``nn.Module``; ``to_int8`` returns its callable ``Int8Model``),
* with the output shape of the input model,
* the input model is untouched (every transform works on a copy by default),
* with ``inplace=True`` the returned object *is* the input model, changed, and it
  gives the same outputs as the copy (``to_int8`` returns an ``Int8Model`` and
  takes no ``inplace``: it never changes its input),
* the result survives the file round trip slimtorch offers for it (same outputs),
* no process-wide state changed: logging levels, handlers and disabled flags,
  warning filters, ``sys.stdout`` / ``sys.stderr``, torch's quantized engine,
  thread counts, default dtype, grad / inference mode, environment variables,
* no forward hook is left on the returned model (calibration hooks are removed).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import slimtorch
from tests.deploy.int8_models import ConvUserNet, conv_net
from tests.llm_fixtures import tiny_ids, tiny_llama

# ---- tiny models and inputs ---------------------------------------------------------------------------------


def mlp() -> nn.Module:
    from slimtorch.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_model("mlp", hidden=[32, 32], in_features=16, num_classes=4).eval()


def smoothed_mlp() -> nn.Module:
    """The architecture ``smooth_linears`` leaves (each Linear wrapped): where its files load."""
    from slimtorch.deploy.smooth import smooth_linears

    return smooth_linears(mlp(), [(mlp_batch(),)])


def mlp_batch() -> torch.Tensor:
    return torch.randn(16, 16, generator=torch.Generator().manual_seed(1))


def folded_conv_net() -> nn.Module:
    """The architecture ``fold_conv_bn`` leaves (BatchNorm folded into the convs): where its files load."""
    from slimtorch.deploy import fold_conv_bn

    return fold_conv_bn(ConvUserNet())


def folded_trained_like_conv_net() -> nn.Module:
    """``conv_net`` (random BatchNorm statistics) with BatchNorm folded.

    Its conv pairs are ones ``cross_layer_equalize`` can scale.
    """
    from slimtorch.deploy import fold_conv_bn

    return fold_conv_bn(conv_net())


def conv_net_with_biases() -> nn.Module:
    """``ConvUserNet`` with a bias on every conv: ``bias_correct`` adds one where there was none."""
    m = ConvUserNet()
    for conv in m.modules():
        if isinstance(conv, nn.Conv2d) and conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
    return m


def conv_batch() -> torch.Tensor:
    return torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(2))


def llama() -> nn.Module:
    return tiny_llama(seed=0, layers=2, hidden=64, intermediate=128)


LM_IDS = tiny_ids(4, 16, seed=3)


def labelled(x: torch.Tensor, classes: int) -> TensorDataset:
    return TensorDataset(x, torch.arange(len(x)) % classes)


# ---- how a row saves and reloads its result -------------------------------------------------------------------


def io_round_trip(make: Callable[[], nn.Module] | None):
    """``slimtorch.save`` / ``slimtorch.load`` (into a fresh ``make()`` for a model of the user's class)."""

    def run(out: nn.Module, folder: Path) -> Callable:
        path = slimtorch.save(out, folder / "model.safetensors")
        return slimtorch.load(path, model=make() if make else None).eval()

    return run


def quantized_round_trip(out: nn.Module, folder: Path) -> Callable:
    from slimtorch.quantize import load_quantized, save_quantized

    return load_quantized(save_quantized(out, folder / "model.safetensors"))


def lm_round_trip(out: nn.Module, folder: Path) -> Callable:
    from slimtorch.quantize.qlinear import load_quantized_lm, save_quantized_lm

    return load_quantized_lm(save_quantized_lm(out, folder / "lm"))


def onnx_round_trip(out: Any, folder: Path) -> Callable:
    from slimtorch.export import ort_session

    sess = ort_session(out.path)
    name = sess.get_inputs()[0].name
    return lambda x: torch.from_numpy(sess.run(None, {name: x.numpy()})[0])


# ---- the table ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One public transform on one tiny model.

    ``call(model, x, folder, **kw)`` runs the transform with a small config given as a dict
    (the form recipes use; ``folder``: a fresh directory for transforms that write files;
    ``kw``: passed on to the verb, ``inplace=True`` here); ``save_load``: the file round
    trip for its result, or
    ``no_file``: why no slimtorch file holds it today (docs/api.md says the same);
    ``hooks``: the result works through forward hooks by design (activation fake-quant);
    ``threads``: the thread count during the call (the module runs on one; methods that switch
    the count themselves run on two, so a count they fail to restore shows).
    """

    id: str
    model: Callable[[], nn.Module]
    batch: Callable[[], torch.Tensor]
    call: Callable[..., Any]
    save_load: Callable[[Any, Path], Callable] | None
    hooks: bool = False
    no_file: str = ""
    threads: int = 1


def _prune(m, x, folder, **kw):
    from slimtorch.prune import prune

    return prune(m, {"sparsity": 0.5}, **kw)


def _prune_iterative(m, x, folder, **kw):
    from slimtorch.prune import prune_iterative

    return prune_iterative(
        m, {"sparsity": 0.5}, labelled(x, 4), {"epochs": 1, "batch_size": 8}, steps=2, verbose=False, **kw
    )


def _prune_scheduled(m, x, folder, **kw):
    from slimtorch.prune import prune_scheduled

    cfg = {"prune": {"sparsity": 0.5}, "schedule": "agp", "finetune": {"epochs": 1, "batch_size": 8}}
    return prune_scheduled(m, cfg, labelled(x, 4), verbose=False, **kw)


def _prune_finetune(m, x, folder, **kw):
    from slimtorch.prune.structured import prune_finetune

    return prune_finetune(m, {"ratio": 0.5}, x[:2], labelled(x, 5), {"epochs": 1, "batch_size": 8}, verbose=False, **kw)


def _prune_channels(m, x, folder, **kw):
    from slimtorch.prune.structured import prune_channels

    return prune_channels(m, {"ratio": 0.5}, x[:2], **kw)


def _quantize_model(m, x, folder, **kw):
    from slimtorch.quantize import quantize_model

    return quantize_model(
        m, {"weight_bits": 4, "act_bits": 8, "calib_batches": 2, "calib_batch_size": 8}, labelled(x, 4), **kw
    )


def _kmeans_share(m, x, folder, **kw):
    from slimtorch.quantize import kmeans_share

    return kmeans_share(m, {"bits": 3, "iters": 10}, **kw)


def _clip_weights(m, x, folder, **kw):
    from slimtorch.quantize import clip_weights

    return clip_weights(m, {"threshold": 0.1}, **kw)


def _cle(m, x, folder, **kw):
    from slimtorch.deploy import cross_layer_equalize

    return cross_layer_equalize(m, **kw)


def _fold_conv_bn(m, x, folder, **kw):
    from slimtorch.deploy import fold_conv_bn

    return fold_conv_bn(m, **kw)


def _bias_correct(m, x, folder, **kw):
    from slimtorch.deploy import bias_correct

    return bias_correct(m, [(x,)], **kw)


def _adaround(m, x, folder, **kw):
    from slimtorch.deploy import adaround

    return adaround(m, [(x,)], iters=5, samples=64, **kw)


def _to_int8(backend: str, mode: str):
    def call(m, x, folder):
        from slimtorch.deploy import to_int8

        return to_int8(m, {"backend": backend, "mode": mode}, x, out_dir=folder)

    return call


def _distill(m, x, folder, **kw):
    from slimtorch.distill import distill

    teacher = mlp()
    cfg = {"temperature": 2.0, "train": {"epochs": 1, "batch_size": 8}}
    return distill(m, cfg, teacher, labelled(x, 4), verbose=False, **kw)


def _smooth_linears(m, x, folder, **kw):
    from slimtorch.deploy.smooth import smooth_linears

    return smooth_linears(m, [(x,)], **kw)


def _finetune_pruned_with_kd(m, x, folder, **kw):
    from slimtorch.distill import finetune_pruned_with_kd

    pruned = _prune(m, x, folder, **kw)
    return finetune_pruned_with_kd(
        pruned, {"train": {"epochs": 1, "batch_size": 8}}, labelled(x, 4), verbose=False, **kw
    )


def _qat_with_teacher(m, x, folder, **kw):
    from slimtorch.distill import qat_with_teacher

    return qat_with_teacher(
        m, {"train": {"epochs": 1, "batch_size": 8}}, labelled(x, 4), teacher=mlp(), verbose=False, **kw
    )


def quantized_mlp() -> nn.Module:
    return _quantize_model(mlp(), mlp_batch(), Path())


def verb(path: str) -> Callable:
    """The public function at ``package.module.name`` (imported when a row runs, not at collection)."""
    import importlib

    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _lm(fn_path: str, config: dict, with_ids: bool):
    def call(m, x, folder, **kw):
        fn = verb(fn_path)
        return fn(m, config, LM_IDS, **kw) if with_ids else fn(m, config, **kw)

    return call


G = {"grid": {"bits": 4, "group_size": 32}}

ROWS = [
    Row("prune", mlp, mlp_batch, _prune, io_round_trip(None)),
    Row("prune_iterative", mlp, mlp_batch, _prune_iterative, io_round_trip(None)),
    Row("prune_scheduled", mlp, mlp_batch, _prune_scheduled, io_round_trip(None)),
    Row("prune_channels", conv_net, conv_batch, _prune_channels, io_round_trip(ConvUserNet)),
    Row("prune_finetune", conv_net, conv_batch, _prune_finetune, io_round_trip(ConvUserNet)),
    Row("quantize_model", mlp, mlp_batch, _quantize_model, quantized_round_trip, hooks=True),
    Row("kmeans_share", mlp, mlp_batch, _kmeans_share, io_round_trip(None)),
    Row("clip_weights", mlp, mlp_batch, _clip_weights, io_round_trip(None)),
    # on the folded net: with a BatchNorm between them no pair is equalized (a no-op would prove nothing)
    Row("cross_layer_equalize", folded_trained_like_conv_net, conv_batch, _cle, io_round_trip(folded_conv_net)),
    Row("fold_conv_bn", conv_net, conv_batch, _fold_conv_bn, io_round_trip(folded_conv_net)),
    Row("bias_correct", conv_net, conv_batch, _bias_correct, io_round_trip(conv_net_with_biases)),
    Row("adaround", conv_net, conv_batch, _adaround, io_round_trip(folded_conv_net)),
    Row("smooth_linears", mlp, mlp_batch, _smooth_linears, io_round_trip(smoothed_mlp)),
    Row("to_int8[onnxruntime-static]", conv_net, conv_batch, _to_int8("onnxruntime", "static"), onnx_round_trip),
    Row("to_int8[onnxruntime-dynamic]", mlp, mlp_batch, _to_int8("onnxruntime", "dynamic"), onnx_round_trip),
    Row(
        "to_int8[torchao-dynamic]",
        mlp,
        mlp_batch,
        _to_int8("torchao", "dynamic"),
        None,
        no_file="PyTorch-eager INT8: the Int8Model runs in this process and writes no file",
    ),
    Row(
        "to_int8[torch_fx-static]",
        conv_net,
        conv_batch,
        _to_int8("torch_fx", "static"),
        None,
        no_file="PyTorch-eager INT8: the Int8Model runs in this process and writes no file",
    ),
    Row(
        "to_int8[torch_fx-dynamic]",
        mlp,
        mlp_batch,
        _to_int8("torch_fx", "dynamic"),
        None,
        no_file="PyTorch-eager INT8: the Int8Model runs in this process and writes no file",
    ),
    Row("distill", mlp, mlp_batch, _distill, io_round_trip(None)),
    Row("finetune_pruned_with_kd", mlp, mlp_batch, _finetune_pruned_with_kd, io_round_trip(None)),
    Row("qat_with_teacher", quantized_mlp, mlp_batch, _qat_with_teacher, quantized_round_trip, hooks=True),
    Row("quantize_rtn", llama, lambda: LM_IDS, _lm("slimtorch.quantize.rtn.quantize_rtn", G, False), lm_round_trip),
    Row("quantize_hqq", llama, lambda: LM_IDS, _lm("slimtorch.quantize.hqq.quantize_hqq", G, False), lm_round_trip),
    Row(
        "quantize_gptq",
        llama,
        lambda: LM_IDS,
        _lm("slimtorch.quantize.gptq.quantize_gptq", G, True),
        lm_round_trip,
        threads=2,
    ),
    Row("quantize_awq", llama, lambda: LM_IDS, _lm("slimtorch.quantize.awq.quantize_awq", G, True), lm_round_trip),
    Row(
        "quantize_w8a8",
        llama,
        lambda: LM_IDS,
        _lm("slimtorch.quantize.w8a8.quantize_w8a8", {}, True),
        None,
        no_file="a float simulation of W8A8 for perplexity; deployment goes through to_int8",
    ),
    Row(
        "quantize_embedding",
        llama,
        lambda: LM_IDS,
        _lm("slimtorch.quantize.qembedding.quantize_embedding", {"bits": 8}, False),
        lm_round_trip,
    ),
    Row(
        "prune_magnitude_lm",
        llama,
        lambda: LM_IDS,
        _lm("slimtorch.prune.prune_magnitude_lm", {"sparsity": 0.5}, False),
        io_round_trip(llama),
    ),
    Row(
        "prune_wanda",
        llama,
        lambda: LM_IDS,
        _lm("slimtorch.prune.prune_wanda", {"sparsity": 0.5}, True),
        io_round_trip(llama),
    ),
    Row(
        "prune_sparsegpt",
        llama,
        lambda: LM_IDS,
        _lm("slimtorch.prune.prune_sparsegpt", {"sparsity": 0.5}, True),
        io_round_trip(llama),
        threads=2,
    ),
]


# ---- what is recorded around each call ---------------------------------------------------------------------


def global_state() -> dict[str, Any]:
    """Process-wide settings a library call must leave as it found them."""
    loggers = {"": logging.getLogger()} | {
        n: lg for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)
    }
    return {
        "logger levels": {n: lg.level for n, lg in loggers.items()},
        "logger handlers": {n: list(lg.handlers) for n, lg in loggers.items()},
        "logger disabled": {n: lg.disabled for n, lg in loggers.items()},
        "logging.disable": logging.root.manager.disable,
        "warning filters": list(warnings.filters),
        "sys.stdout": sys.stdout,
        "sys.stderr": sys.stderr,
        "quantized engine": torch.backends.quantized.engine,
        "threads": torch.get_num_threads(),
        "default dtype": torch.get_default_dtype(),
        "grad enabled": torch.is_grad_enabled(),
        "inference mode": torch.is_inference_mode_enabled(),
        "environment": dict(os.environ),
    }


# Set once, on purpose, when slimtorch first loads a Hugging Face model or tokenizer (docs/api.md): it never
# downloads, and tokenizers must not fork threads under our worker processes.
DELIBERATE_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What differs, entry by entry: for maps (loggers, environment) only the keys that changed; loggers
    created during the call are left out (an import makes its own), and so are the documented variables
    set to their documented values where the user had not set them."""
    out = {}
    for key, old in before.items():
        new = after[key]
        if isinstance(old, dict):
            keys = old.keys() if key.startswith("logger") else old.keys() | new.keys()
            diff = {k: (old.get(k), new.get(k)) for k in keys if new.get(k) != old.get(k)}
            if key == "environment":
                diff = {k: v for k, v in diff.items() if not (v[0] is None and DELIBERATE_ENV.get(k) == v[1])}
        else:
            diff = None if new == old else (old, new)
        if diff:
            out[key] = diff
    return out


def fingerprint(model: nn.Module) -> dict[str, Any]:
    """What 'untouched' means: the same tensors, module types and train/eval flags."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "modules": [(n, type(m).__name__, m.training) for n, m in model.named_modules()],
    }


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["modules"] == b["modules"]
        and a["state"].keys() == b["state"].keys()
        and all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    )


def logits(out: Any) -> torch.Tensor:
    out = getattr(out, "logits", out)
    return (out[0] if isinstance(out, (tuple, list)) else out).detach().float()


@dataclass
class Ran:
    row: Row
    model: nn.Module
    snapshot: dict[str, Any]
    ref_shape: torch.Size
    result: Any
    state_changes: dict[str, Any]
    batch: torch.Tensor
    inplace: (
        tuple[nn.Module, dict[str, Any], Any] | None
    )  # a second run with inplace=True: (input, its snapshot, result)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are thousands of small ops: on a shared machine more threads only wait on each other
    (AWQ on the tiny Llama: 0.2 s on one thread, 20 s on two busy cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def warm():
    """Import the runtimes and run one tiny export first: torch, ONNX Runtime and transformers set up their
    own loggers, warning filters and cache variables on first use, once per process; that is not a row's doing."""
    import tempfile

    import onnxruntime.quantization  # noqa: F401
    import torch._dynamo  # imported by the optimizers' first step; sets its cache directory
    import torch.ao.quantization.quantize_fx
    import transformers  # noqa: F401

    import slimtorch.data.text  # noqa: F401
    from slimtorch.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(nn.Linear(2, 2), torch.randn(1, 2), Path(tmp) / "warm.onnx", check=False)


@pytest.fixture(scope="module", params=ROWS, ids=[r.id for r in ROWS])
def ran(request, warm, tmp_path_factory) -> Ran:
    row: Row = request.param
    model, x = row.model(), row.batch()
    with torch.no_grad():
        ref_shape = logits(model(x)).shape
    snap = fingerprint(model)
    # a quantized engine other than the default one, so a transform that sets its own and keeps it shows up
    engine = torch.backends.quantized.engine
    others = [e for e in torch.backends.quantized.supported_engines if e not in (engine, "none")]
    torch.backends.quantized.engine = others[0] if others else engine
    threads = torch.get_num_threads()
    torch.set_num_threads(row.threads)
    try:
        before = global_state()
        result = row.call(model, x, tmp_path_factory.mktemp("out"))
        after = global_state()
        inplace = None
        if not row.id.startswith("to_int8"):
            again = row.model()
            inplace = (again, fingerprint(again), row.call(again, x, tmp_path_factory.mktemp("out"), inplace=True))
    finally:
        torch.backends.quantized.engine = engine
        torch.set_num_threads(threads)
    return Ran(row, model, snap, ref_shape, result, changed(before, after), x, inplace)


# ---- the assertions, the same for every row ------------------------------------------------------------------


def test_returns_a_model_with_the_same_output_shape(ran):
    out = ran.result
    if ran.row.id.startswith("to_int8"):
        assert callable(out) and out.backend == ran.row.id.split("[")[1].split("-")[0]
    else:
        assert isinstance(out, nn.Module)
    with torch.no_grad():
        y = logits(out(ran.batch))
    assert y.shape == ran.ref_shape
    assert torch.isfinite(y).all()


def test_input_model_untouched_by_default(ran):
    assert ran.result is not ran.model
    assert same(fingerprint(ran.model), ran.snapshot), f"{ran.row.id} changed its input model"


# to_int8 returns an Int8Model and never changes its input: it takes no inplace (docs/api.md)
INPLACE_ROWS = [r for r in ROWS if not r.id.startswith("to_int8")]
FILE_ROWS = [r for r in ROWS if r.save_load is not None]


@pytest.mark.parametrize("ran", INPLACE_ROWS, ids=[r.id for r in INPLACE_ROWS], indirect=True)
def test_inplace_true_returns_the_input_model_changed(ran):
    model, snap, result = ran.inplace
    assert result is model
    assert not same(fingerprint(model), snap), f"{ran.row.id}: inplace=True left the model as it was"


@pytest.mark.parametrize("ran", INPLACE_ROWS, ids=[r.id for r in INPLACE_ROWS], indirect=True)
def test_inplace_true_gives_the_same_model_as_the_copy(ran):
    """The keyword changes where the result lives, not what it is."""
    with torch.no_grad():
        torch.testing.assert_close(
            logits(ran.inplace[2](ran.batch)), logits(ran.result(ran.batch)), rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("ran", FILE_ROWS, ids=[r.id for r in FILE_ROWS], indirect=True)
def test_save_load_round_trip_keeps_outputs(ran, tmp_path):
    """Rows without a file say why in ``no_file`` (docs/api.md lists them)."""
    again = ran.row.save_load(ran.result, tmp_path)
    with torch.no_grad():
        want, got = logits(ran.result(ran.batch)), logits(again(ran.batch))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_no_process_wide_state_changed(ran):
    assert ran.state_changes == {}


def test_no_forward_hook_left_on_the_result(ran):
    if not isinstance(ran.result, nn.Module) or ran.row.hooks:
        return
    left = [n for n, m in ran.result.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    assert left == []


def test_every_row_has_a_distinct_technique():
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids))


# Public functions that take a model and return one but are steps of a technique, not techniques: each is
# exercised inside a row above (or by its own tests) and listed in docs/api.md.
HELPERS = {
    "attach_masks": "prune's first step (all-ones masks)",
    "finalize": "folds prune's masks; run by the io round trip",
    "remove_masks": "finalize on a copy (inplace=True: finalize)",
    "calibrate": "quantize_model's calibration",
    "attach_activation_quant": "load_quantized's last step",
    "strip_activation_quant": "save_quantized's first step",
    "exact_float": "to_int8's float reference",
    "dense_copy": "a teacher for finetune_pruned_with_kd",
    "distill_fit": "distill, returning the history",
}
TAKES_A_MODEL = ("model", "student", "pruned", "qat_model")


def test_the_table_covers_every_public_transform():
    """A public function that takes a model and returns one needs a row here (or a line in HELPERS)."""
    import importlib
    import inspect

    packages = [
        "slimtorch.prune",
        "slimtorch.prune.structured",
        "slimtorch.quantize",
        "slimtorch.deploy",
        "slimtorch.distill",
    ]
    lm_modules = [
        "slimtorch.quantize.rtn",
        "slimtorch.quantize.hqq",
        "slimtorch.quantize.gptq",
        "slimtorch.quantize.awq",
        "slimtorch.quantize.w8a8",
        "slimtorch.quantize.qembedding",
        "slimtorch.deploy.smooth",
    ]
    public = set()
    for name in packages + lm_modules:
        mod = importlib.import_module(name)
        names = mod.__all__ if name in packages else [n for n in vars(mod) if not n.startswith("_")]
        for n in names:
            fn = getattr(mod, n)
            if not inspect.isfunction(fn):
                continue
            if name in lm_modules and fn.__module__ != name:
                continue  # imported there from elsewhere
            sig = inspect.signature(fn)
            params = list(sig.parameters)
            if (
                params
                and params[0] in TAKES_A_MODEL
                and sig.return_annotation in ("nn.Module", "Int8Model", "FitResult")
            ):
                public.add(n)
    rows = {r.id.split("[")[0] for r in ROWS}
    assert {"prune", "quantize_model", "to_int8", "distill", "quantize_gptq"} <= public  # the scan finds verbs
    assert public - rows - set(HELPERS) == set()
    assert set(HELPERS) <= public  # no stale helper names


def test_to_int8_leaves_a_model_in_training_mode_as_it_was(tmp_path):
    """It converts in eval mode (dropout off, BatchNorm statistics frozen) and gives the flags back."""
    from slimtorch.deploy import to_int8

    model = mlp().train()
    to_int8(model, {"backend": "torch_fx", "mode": "dynamic"}, mlp_batch(), out_dir=tmp_path)
    assert all(m.training for m in model.modules())


# ---- one validation path for every config argument ----------------------------------------------------------

BAD = {"no_such_field": 1}
_TRAIN = {"epochs": 1, "batch_size": 8}
_KD = {"train": _TRAIN}


def _with_data(*args, **kwargs):
    """``call(fn, model, config)`` for a verb taking ``(model, config, *args, **kwargs)``."""
    return lambda fn, m, c: fn(m, c, *args, **kwargs)


def _distill_call(fn, m, c):
    return fn(m, c, mlp(), labelled(mlp_batch(), 4), verbose=False)


def _kd_call(fn, m, c):
    return fn(m, c, labelled(mlp_batch(), 4), teacher=mlp(), verbose=False)


@dataclass(frozen=True)
class Configured:
    """A verb with a config: how to call it, a small valid config, a wrong value and the leaf it must name."""

    path: str
    model: Callable[[], nn.Module]
    call: Callable[[Callable, nn.Module, Any], Any]  # call(verb, model, config)
    good: dict[str, Any]
    bad: dict[str, Any]
    leaf: str  # the dotted field a ConfigError for ``bad`` names (after any prefix of the verb's)
    batch: Callable[[], torch.Tensor] = mlp_batch


G8 = {"grid": {"bits": 4, "group_size": 32}}
CONFIGURED = {
    "prune": Configured("slimtorch.prune.prune", mlp, _with_data(), {"sparsity": 0.5}, {"sparsity": 1.5}, "sparsity"),
    "prune_iterative": Configured(
        "slimtorch.prune.prune_iterative",
        mlp,
        _with_data(labelled(mlp_batch(), 4), _TRAIN, steps=1, verbose=False),
        {"sparsity": 0.5},
        {"per_layer": {"head": 2.0}},
        "per_layer.head",
    ),
    "prune_scheduled": Configured(
        "slimtorch.prune.prune_scheduled",
        mlp,
        _with_data(labelled(mlp_batch(), 4), verbose=False),
        {"prune": {"sparsity": 0.5}},
        {"prune": {"sparsity": 1.5}},
        "prune.sparsity",
    ),
    "prune_channels": Configured(
        "slimtorch.prune.structured.prune_channels",
        conv_net,
        _with_data(conv_batch()[:2]),
        {"ratio": 0.5},
        {"ratio": 1.0},
        "ratio",
        conv_batch,
    ),
    "prune_finetune": Configured(
        "slimtorch.prune.structured.prune_finetune",
        conv_net,
        _with_data(conv_batch()[:2], labelled(conv_batch(), 5), _TRAIN, verbose=False),
        {"ratio": 0.5},
        {"round_to": 0},
        "round_to",
        conv_batch,
    ),
    "quantize_model": Configured(
        "slimtorch.quantize.quantize_model",
        mlp,
        _with_data(labelled(mlp_batch(), 4)),
        {"weight_bits": 4, "calib_batches": 2, "calib_batch_size": 8},
        {"weight_bits": 9},
        "weight_bits",
    ),
    "kmeans_share": Configured(
        "slimtorch.quantize.kmeans_share",
        mlp,
        _with_data(),
        {"bits": 3, "iters": 10},
        {"per_layer": {"head": 0}},
        "per_layer.head",
    ),
    "clip_weights": Configured(
        "slimtorch.quantize.clip_weights", mlp, _with_data(), {"threshold": 0.1}, {"threshold": -1.0}, "threshold"
    ),
    "to_int8": Configured(
        "slimtorch.deploy.to_int8",
        mlp,
        _with_data(mlp_batch()),
        {"backend": "torch_fx", "mode": "dynamic"},
        {"calib_batches": 0},
        "calib_batches",
    ),
    # one config class per backend and mode: a setting of another mode is named, not ignored
    "to_int8[onnxruntime-dynamic]": Configured(
        "slimtorch.deploy.to_int8",
        mlp,
        _with_data(mlp_batch()),
        {"mode": "dynamic", "max_float_layers": 0},
        {"calibration": "minmax"},
        "calibration",
    ),
    "distill": Configured(
        "slimtorch.distill.distill",
        mlp,
        _distill_call,
        _KD,
        {"train": {**_TRAIN, "optimizer": {"lr": 0}}},
        "train.optimizer.lr",
    ),
    "finetune_pruned_with_kd": Configured(
        "slimtorch.distill.finetune_pruned_with_kd", mlp, _kd_call, _KD, {"temperature": 0}, "temperature"
    ),
    "qat_with_teacher": Configured(
        "slimtorch.distill.qat_with_teacher", quantized_mlp, _kd_call, _KD, {"alpha": 2.0}, "alpha"
    ),
    "quantize_rtn": Configured(
        "slimtorch.quantize.rtn.quantize_rtn",
        llama,
        _with_data(),
        G8,
        {"grid": {"bits": 1}},
        "grid.bits",
        lambda: LM_IDS,
    ),
    "quantize_hqq": Configured(
        "slimtorch.quantize.hqq.quantize_hqq",
        llama,
        _with_data(),
        G8,
        {"grid": {"group_size": 0}},
        "grid.group_size",
        lambda: LM_IDS,
    ),
    "quantize_gptq": Configured(
        "slimtorch.quantize.gptq.quantize_gptq", llama, _with_data(LM_IDS), G8, {"damp": -1.0}, "damp", lambda: LM_IDS
    ),
    "quantize_awq": Configured(
        "slimtorch.quantize.awq.quantize_awq",
        llama,
        _with_data(LM_IDS),
        {**G8, "n_grid": 3},
        {"n_grid": 0},
        "n_grid",
        lambda: LM_IDS,
    ),
    "quantize_w8a8": Configured(
        "slimtorch.quantize.w8a8.quantize_w8a8", llama, _with_data(LM_IDS), {}, {"alpha": 2.0}, "alpha", lambda: LM_IDS
    ),
    "quantize_embedding": Configured(
        "slimtorch.quantize.qembedding.quantize_embedding",
        llama,
        _with_data(),
        {"bits": 8},
        {"bits": 1},
        "bits",
        lambda: LM_IDS,
    ),
    "prune_magnitude_lm": Configured(
        "slimtorch.prune.prune_magnitude_lm",
        llama,
        _with_data(),
        {"sparsity": 0.5},
        {"sparsity": 1.5},
        "sparsity",
        lambda: LM_IDS,
    ),
    "prune_wanda": Configured(
        "slimtorch.prune.prune_wanda",
        llama,
        _with_data(LM_IDS),
        {"sparsity": 0.5},
        {"sparsity": 1.5},
        "sparsity",
        lambda: LM_IDS,
    ),
    "prune_sparsegpt": Configured(
        "slimtorch.prune.prune_sparsegpt",
        llama,
        _with_data(LM_IDS),
        {"sparsity": 0.5},
        {"sparsity": 1.5},
        "sparsity",
        lambda: LM_IDS,
    ),
}
CONFIG_CALLS = {
    name: (lambda c=c: c.call(verb(c.path), c.model(), {**c.good, **BAD})) for name, c in CONFIGURED.items()
}


def config_class(c: Configured) -> type:
    """The config class a verb's ``config`` annotation names first (``PruneConfig | dict | None``)."""
    import inspect
    import sys

    fn = verb(c.path)
    annotation = str(inspect.signature(fn).parameters["config"].annotation)
    return vars(sys.modules[fn.__module__])[annotation.split("|")[0].strip()]


def outputs(result: Any, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return logits(result(batch))


@pytest.mark.parametrize("verb", sorted(CONFIG_CALLS))
def test_a_wrong_config_field_is_a_config_error_naming_it(verb):
    """Every verb with a config validates its dict form the same way, before any work (docs/api.md)."""
    from slimtorch.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        CONFIG_CALLS[verb]()
    assert info.value.field is not None and info.value.field.endswith("no_such_field"), info.value


@pytest.mark.parametrize("name", sorted(CONFIGURED))
def test_a_wrong_value_is_a_config_error_naming_the_leaf(name):
    """One validation path: the dict form and direct construction of the config both name the leaf field."""
    from slimtorch.core.errors import ConfigError

    c = CONFIGURED[name]
    with pytest.raises(ConfigError) as info:
        c.call(verb(c.path), c.model(), {**c.good, **c.bad})
    assert info.value.field is not None and info.value.field.endswith(c.leaf), (info.value.field, str(info.value))
    assert c.leaf in str(info.value)
    with pytest.raises(ConfigError) as direct:
        config_class(c)(**{**c.good, **c.bad})
    assert direct.value.field == c.leaf


@pytest.mark.parametrize("name", sorted(CONFIGURED))
def test_object_dict_and_none_give_the_same_model(name, tmp_path):
    """``config`` as the config object, its dict form, or None (the defaults): the same transform."""
    c = CONFIGURED[name]
    fn, cls, x = verb(c.path), config_class(c), c.batch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        as_dict = outputs(c.call(fn, c.model(), dict(c.good)), x)
        as_object = outputs(c.call(fn, c.model(), cls(**c.good)), x)
        torch.testing.assert_close(as_object, as_dict, rtol=1e-5, atol=1e-5)
        if name == "clip_weights":  # its threshold has no default: None names the missing field
            from slimtorch.core.errors import ConfigError

            with pytest.raises(ConfigError, match="threshold"):
                c.call(fn, c.model(), None)
            return
        if name in ("distill", "finetune_pruned_with_kd", "qat_with_teacher", "prune_iterative", "prune_finetune"):
            return  # their defaults train for many epochs; the dict / object case above covers the path
        as_none = outputs(c.call(fn, c.model(), None), x)
        torch.testing.assert_close(as_none, outputs(c.call(fn, c.model(), cls()), x), rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(threads)


def test_every_row_with_a_config_has_a_validation_case():
    """Rows whose verb takes a config (the keyword-argument deploy helpers take none; docs/api.md)."""
    no_config = {"cross_layer_equalize", "fold_conv_bn", "bias_correct", "adaround", "smooth_linears"}
    assert {r.id.split("[")[0] for r in ROWS} - no_config == {k.split("[")[0] for k in CONFIG_CALLS}


# ---- the layer-streamed language-model variants: a folder in, a folder out ------------------------------------

# (the column sweeps that switch thread counts are the in-memory ones, checked on two threads above)
STREAMED = {
    "quantize_gptq_streamed": ("slimtorch.quantize.gptq.quantize_gptq_streamed", G),
    "quantize_awq_streamed": ("slimtorch.quantize.awq.quantize_awq_streamed", {**G, "n_grid": 3}),
    "prune_wanda_streamed": ("slimtorch.prune.wanda.prune_wanda_streamed", {"sparsity": 0.5}),
    "prune_sparsegpt_streamed": ("slimtorch.prune.sparsegpt.prune_sparsegpt_streamed", {"sparsity": 0.5}),
}


@pytest.mark.parametrize("name", sorted(STREAMED))
def test_streamed_variants_write_a_loadable_folder_and_leave_no_global_state(name, tmp_path, warm):
    from slimtorch.quantize.qlinear import load_quantized_lm
    from tests.llm_dirs import tiny_llama_dir

    path, config = STREAMED[name]
    source = tiny_llama_dir(tmp_path / "lm")
    ids = tiny_ids(4, 16, seed=3, vocab=256)
    before = global_state()
    out = verb(path)(source, tmp_path / "out", config, ids)
    assert changed(before, global_state()) == {}
    assert list(source.iterdir())  # the source folder is left in place
    with torch.no_grad():
        assert logits(load_quantized_lm(out)(ids)).shape == (4, 16, 260)


# ---- one layer selection for every technique (docs/api.md, slimtorch.core.layers) ----------------------------


def _adaround_sel(fn, m, layers):
    return fn(m, [(conv_batch(),)], iters=5, samples=64, layers=layers)


def _bias_correct_sel(fn, m, layers):
    return fn(m, [(conv_batch(),)], layers=layers)


@dataclass(frozen=True)
class Selecting:
    """A verb with a ``layers`` selection: how to call it with one, and a layer to exclude.

    ``trained``: the verb trains the whole model, so an excluded layer keeps its shape and
    stays dense rather than bit-identical.
    """

    path: str
    model: Callable[[], nn.Module]
    call: Callable[[Callable, nn.Module, Any], Any]  # call(verb, model, layers)
    excluded: str
    trained: bool = False


def _with_config(name: str):
    c = CONFIGURED[name]
    return lambda fn, m, layers: c.call(fn, m, {**c.good, "layers": layers})


_LM_LAYER = "model.layers.0.mlp.down_proj"
SELECTING = {
    "prune": Selecting("slimtorch.prune.prune", mlp, _with_config("prune"), "fc1"),
    "prune_iterative": Selecting(
        "slimtorch.prune.prune_iterative", mlp, _with_config("prune_iterative"), "fc1", trained=True
    ),
    "prune_scheduled": Selecting(
        "slimtorch.prune.prune_scheduled",
        mlp,
        lambda fn, m, layers: CONFIGURED["prune_scheduled"].call(fn, m, {"prune": {"sparsity": 0.5, "layers": layers}}),
        "fc1",
    ),
    "prune_channels": Selecting(
        "slimtorch.prune.structured.prune_channels", conv_net, _with_config("prune_channels"), "conv1"
    ),
    "prune_finetune": Selecting(
        "slimtorch.prune.structured.prune_finetune", conv_net, _with_config("prune_finetune"), "conv1", trained=True
    ),
    "quantize_model": Selecting("slimtorch.quantize.quantize_model", mlp, _with_config("quantize_model"), "fc1"),
    "kmeans_share": Selecting("slimtorch.quantize.kmeans_share", mlp, _with_config("kmeans_share"), "fc1"),
    "clip_weights": Selecting("slimtorch.quantize.clip_weights", mlp, _with_config("clip_weights"), "fc1"),
    "adaround": Selecting("slimtorch.deploy.adaround", folded_trained_like_conv_net, _adaround_sel, "conv1"),
    "bias_correct": Selecting("slimtorch.deploy.bias_correct", conv_net, _bias_correct_sel, "conv1"),
    **{
        name: Selecting(CONFIGURED[name].path, llama, _with_config(name), _LM_LAYER)
        for name in (
            "quantize_rtn",
            "quantize_hqq",
            "quantize_gptq",
            "quantize_awq",
            "prune_magnitude_lm",
            "prune_wanda",
            "prune_sparsegpt",
        )
    },
}


def _layer_state(model: nn.Module, name: str) -> tuple[type, dict[str, torch.Tensor]]:
    layer = model.get_submodule(name)
    return type(layer), {k: v.detach().clone() for k, v in layer.state_dict().items()}


@pytest.mark.parametrize("name", sorted(SELECTING))
def test_an_include_pattern_matching_nothing_is_a_config_error_naming_it(name):
    """The same rule for every technique: a pattern that selects nothing is an error, not a quiet no-op."""
    from slimtorch.core.errors import ConfigError

    s = SELECTING[name]
    with pytest.raises(ConfigError) as info:
        s.call(verb(s.path), s.model(), {"include": ["no_such_layer*"]})
    assert info.value.field is not None and info.value.field.endswith("layers.include"), info.value.field
    assert "'no_such_layer*'" in str(info.value)


@pytest.mark.parametrize("name", sorted(SELECTING))
def test_an_exclude_pattern_matching_nothing_is_a_config_error_naming_it(name):
    from slimtorch.core.errors import ConfigError

    s = SELECTING[name]
    with pytest.raises(ConfigError) as info:
        s.call(verb(s.path), s.model(), {"exclude": [s.excluded + "_typo"]})
    assert info.value.field is not None and info.value.field.endswith("layers.exclude"), info.value.field
    assert f"'{s.excluded}_typo'" in str(info.value)


@pytest.mark.parametrize("name", sorted(SELECTING))
def test_an_excluded_layer_is_left_as_it_was(name):
    s = SELECTING[name]
    model = s.model()
    kind, before = _layer_state(model, s.excluded)
    with torch.random.fork_rng(devices=[]):
        out = s.call(verb(s.path), model, {"exclude": [s.excluded]})
    assert not same(fingerprint(out), fingerprint(model)), f"{name} changed nothing: the check would prove nothing"
    after_kind, after = _layer_state(out, s.excluded)
    assert after_kind is kind and after.keys() == before.keys()
    if s.trained:  # the whole model trains: the layer keeps its shape and all its weights
        w = out.get_submodule(s.excluded).weight
        assert w.shape == before["weight"].shape and bool((w != 0).all())
    else:
        assert all(torch.equal(after[k], before[k]) for k in before), f"{name} changed excluded layer {s.excluded}"


def test_every_verb_with_a_layer_selection_has_a_selection_case():
    """Rows whose verb selects layers (to_int8's keep_float is its own config; the rest take no selection)."""
    no_selection = {
        "cross_layer_equalize",
        "fold_conv_bn",
        "smooth_linears",
        "to_int8",
        "distill",
        "finetune_pruned_with_kd",
        "qat_with_teacher",
        "quantize_w8a8",
        "quantize_embedding",
    }
    assert {r.id.split("[")[0] for r in ROWS} - no_selection == set(SELECTING)


@pytest.mark.parametrize(
    "path",
    sorted(
        {
            "slimtorch.deploy.adaround",
            "slimtorch.deploy.bias_correct",
            "slimtorch.deploy.cross_layer_equalize",
            "slimtorch.deploy.fold_conv_bn",
            "slimtorch.deploy.smooth.smooth_linears",
            *(c.path for c in CONFIGURED.values() if c.path != "slimtorch.deploy.to_int8"),
            "slimtorch.prune.remove_masks",
            "slimtorch.quantize.strip_activation_quant",
            "slimtorch.io.fold",
        }
    ),
)
def test_inplace_is_keyword_only(path):
    import inspect

    param = inspect.signature(verb(path)).parameters["inplace"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is False
