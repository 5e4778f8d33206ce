"""Magnitude, Wanda and SparseGPT pruning of a language model, on a tiny random Llama (tests/llm_fixtures.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.prune import (
    MagnitudeLMConfig,
    SparseGPTConfig,
    WandaConfig,
    prune_magnitude_lm,
    prune_sparsegpt,
    prune_wanda,
    sparsegpt_weight,
)
from slimtorch.prune import sparsegpt as sparsegpt_module
from slimtorch.prune.lm_common import keep_mask
from slimtorch.prune.wanda import wanda_scores
from slimtorch.quantize.qlinear import QuantLinear, load_quantized_lm, save_quantized_lm
from slimtorch.quantize.wgrid import group_bounds
from tests.llm_fixtures import tiny_ids, tiny_llama

CALIB = tiny_ids(16, 32, seed=1)
G4 = {"bits": 4, "group_size": 32}


@pytest.fixture(scope="module", autouse=True)
def one_thread_for_the_module():  # (a second fixture below is named one_thread: this one must not be shadowed)
    # Thousands of tiny matrix products: on a shared machine, more threads only wait on each other.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dense() -> nn.Module:
    return tiny_llama(seed=0)


def run(method: str, model: nn.Module, config: dict, **kw) -> nn.Module:
    if method == "magnitude":
        return prune_magnitude_lm(model, config, **kw)
    if method == "wanda":
        return prune_wanda(model, config, CALIB, **kw)
    return prune_sparsegpt(model, config, CALIB, **kw)


def decoder_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: m.weight.detach() for n, m in model.model.layers.named_modules() if isinstance(m, nn.Linear | QuantLinear)
    }


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# ---- exact sparsity and patterns -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_every_output_row_loses_exactly_its_share(dense, method):
    out = run(method, dense, {"sparsity": 0.3})
    for name, w in decoder_weights(out).items():
        zeros = (w == 0).sum(dim=1)
        assert torch.all(zeros == round(0.3 * w.shape[1])), name


def test_layer_scope_prunes_an_exact_count_per_layer_and_rows_differ(dense):
    out = prune_magnitude_lm(dense, {"sparsity": 0.3, "scope": "layer"})
    for name, w in decoder_weights(out).items():
        assert int((w == 0).sum()) == round(0.3 * w.numel()), name
    q = out.model.layers[0].self_attn.q_proj.weight
    assert (q == 0).sum(dim=1).unique().numel() > 1  # not secretly per row


def test_sparsegpt_prunes_an_exact_count_per_column_block(dense):
    out = prune_sparsegpt(dense, {"sparsity": 0.3, "block_size": 32}, CALIB)
    for name, w in decoder_weights(out).items():
        for s, e in group_bounds(w.shape[1], 32):
            assert int((w[:, s:e] == 0).sum()) == round(0.3 * w.shape[0] * (e - s)), name


@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt", "joint"])
def test_nm_pattern_holds_in_every_group(dense, method, pattern):
    n, m = map(int, pattern.split(":"))
    config = {"pattern": pattern, **({"grid": G4} if method == "joint" else {})}
    out = run("sparsegpt" if method == "joint" else method, dense, config)
    for name, w in decoder_weights(out).items():
        nonzero = (w.reshape(w.shape[0], -1, m) != 0).sum(dim=-1)
        if method == "joint":
            assert int(nonzero.max()) <= n, name  # a kept weight may also round to 0
        else:
            assert torch.all(nonzero == n), name


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_embedding_lm_head_and_norms_stay_untouched(dense, method):
    before = state(dense)
    out = run(method, dense, {})
    after = out.state_dict()
    for key, value in before.items():
        if not key.endswith("_proj.weight"):
            assert torch.equal(after[key], value), key


# ---- what the methods compute --------------------------------------------------------------------------------


def _block0_inputs(model: nn.Module, index: int = 0) -> dict[str, torch.Tensor]:
    """Every Linear's calibration inputs ``(positions, in)`` in block ``index`` of ``model``."""
    got: dict[str, list[torch.Tensor]] = {}
    block = model.model.layers[index]
    hooks = [
        m.register_forward_hook(
            lambda _m, inp, _o, n=n: got.setdefault(n, []).append(inp[0].reshape(-1, inp[0].shape[-1]))
        )
        for n, m in block.named_modules()
        if isinstance(m, nn.Linear)
    ]
    with torch.no_grad():
        for s in range(0, len(CALIB), 8):
            model(CALIB[s : s + 8])
    for h in hooks:
        h.remove()
    return {n: torch.cat(v) for n, v in got.items()}


def test_wanda_block0_masks_match_an_independent_computation(dense):
    x = _block0_inputs(dense)
    out = prune_wanda(dense, {"true_sequential": False}, CALIB)
    for name, lin in dense.model.layers[0].named_modules():
        if not isinstance(lin, nn.Linear):
            continue
        score = lin.weight.abs() * x[name].double().norm(dim=0).float()  # |W_ij| · ‖X_j‖₂
        kept_rank = score.argsort(dim=1, descending=True).argsort(dim=1) < lin.in_features // 2
        pruned_w = out.model.layers[0].get_submodule(name).weight
        assert torch.equal(pruned_w != 0, kept_rank), name
        assert torch.equal(wanda_scores(lin.weight, x[name].double().pow(2).sum(0)) > 0, score > 0)


def test_later_blocks_are_scored_on_the_pruned_blocks_outputs(dense):
    out = prune_wanda(dense, {"true_sequential": False}, CALIB)
    # q_proj of block 1 reads (the norm of) block 0's output: in the pruned model, block 0 is pruned.
    x = _block0_inputs(out, index=1)["self_attn.q_proj"]
    w = dense.model.layers[1].self_attn.q_proj.weight
    expected = keep_mask(wanda_scores(w, x.double().pow(2).sum(0)), WandaConfig())
    assert torch.equal(out.model.layers[1].self_attn.q_proj.weight != 0, expected)


def _output_error(w: torch.Tensor, new: torch.Tensor, x: torch.Tensor) -> float:
    return float(((x @ (w - new).T) ** 2).sum())


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
@pytest.mark.parametrize("layer", ["self_attn.q_proj", "mlp.down_proj"])
def test_sparsegpt_reconstructs_a_layer_better_than_magnitude_and_wanda(dense, layer, pattern):
    x = _block0_inputs(dense)[layer]
    w = dense.model.layers[0].get_submodule(layer).weight.detach()
    config = {"pattern": pattern}
    errors = {}
    for method in ("magnitude", "wanda"):
        if method == "magnitude":
            keep = keep_mask(w.abs(), MagnitudeLMConfig(**config))
        else:
            keep = keep_mask(wanda_scores(w, x.double().pow(2).sum(0)), WandaConfig(**config))
        errors[method] = _output_error(w, w * keep, x)
    new, keep, codes = sparsegpt_weight(w, x.double().T @ x.double(), SparseGPTConfig(**config))
    assert codes is None and torch.equal(new == 0, ~keep)
    sgpt = _output_error(w, new, x)
    assert sgpt < 0.9 * min(errors.values()), (sgpt, errors)


def _reference_sparsegpt(w: torch.Tensor, H: torch.Tensor, sparsity: float, block: int, damp: float) -> torch.Tensor:
    """The reference loop (Frantar & Alistarh's code, as llmcompressor 0.14's ``sparsify_weight`` has it), row-major.

    One change: the block mask prunes exactly ``round(sparsity · numel)`` weights (the reference's
    ``saliency <= sorted[int(sparsity · numel)]`` prunes one more, and every tie).
    """
    W, H = w.clone().float(), H.clone().float()
    H += damp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0])
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    for i1 in range(0, W.shape[1], block):
        i2 = min(i1 + block, W.shape[1])
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        sal = W1**2 / torch.diag(Hinv1).reshape(1, -1) ** 2
        mask1 = torch.zeros(sal.numel(), dtype=torch.bool)
        mask1[torch.sort(sal.T.reshape(-1), stable=True).indices[: round(sparsity * sal.numel())]] = True
        mask1 = mask1.reshape(sal.T.shape).T
        for i in range(i2 - i1):
            q = W1[:, i].clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (W1[:, i] - q) / Hinv1[i, i]
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W


@pytest.mark.parametrize("block", [128, 48])
def test_sparsegpt_weight_is_the_reference_algorithm(block):
    # Pins the per-weight algorithm to the paper's code (and so to llmcompressor's SparseGPT): the same
    # damped inverse-Hessian factor, the adaptive mask per block of columns by w²/[H⁻¹]_jj², the OBS
    # updates inside the block and the lazy update after it. A partial last block (200 = 128 + 72) too.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 200, generator=g) * torch.rand(200, generator=g) * 3
    x[:, 7] *= 20  # an outlier input channel, as decoders have
    w = torch.randn(96, 200, generator=g)
    H = x.double().T @ x.double()
    ref = _reference_sparsegpt(w, H, 0.5, block, 0.01)
    new, keep, _ = sparsegpt_weight(w, H, SparseGPTConfig(sparsity=0.5, block_size=block))
    assert torch.equal(keep, ref != 0)
    torch.testing.assert_close(new, ref, rtol=1e-4, atol=1e-4)


# ---- joint sparse + quantized --------------------------------------------------------------------------------


@pytest.mark.parametrize("symmetric", [False, True])
def test_joint_mode_stores_the_zero_point_code_where_pruned(dense, symmetric, tmp_path):
    out = prune_sparsegpt(dense, {"sparsity": 0.5, "grid": {**G4, "symmetric": symmetric}}, CALIB)
    layers = {n: m for n, m in out.model.layers.named_modules() if isinstance(m, QuantLinear)}
    assert len(layers) == 2 * 7
    for name, q in layers.items():
        qw = q.quantized()
        assert qw.integral_zeros
        zero_code = qw.zeros.repeat_interleave(32, dim=1)[:, : q.in_features]
        at_zero = qw.codes.float() == zero_code
        w = qw.dequantize()
        assert torch.equal(w == 0, at_zero), name  # a zero weight is exactly the zero point's code
        assert int(at_zero.sum()) >= q.in_features * q.out_features // 2, name
    # The integers reload exactly, zeros included.
    back = load_quantized_lm(save_quantized_lm(out, tmp_path / "m"))
    for name, q in layers.items():
        assert torch.equal(back.model.layers.get_submodule(name).codes, q.codes)


# ---- copy / in place, resume ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_input_model_is_untouched_unless_inplace(method):
    model = tiny_llama(seed=3)
    before = state(model)
    out = run(method, model, {})
    assert out is not model
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    same = run(method, model, {}, inplace=True)
    assert same is model
    assert float((model.model.layers[1].mlp.up_proj.weight == 0).float().mean()) == 0.5


class _Killed(RuntimeError):
    pass


@pytest.fixture
def one_thread():
    """Bit-exact comparisons between runs: one intra-op thread, restored afterwards.

    With two threads the float sums of a matmul may be split differently between runs on a loaded
    machine (a mask flip once made the resumed weights differ in a full-suite run).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("config", [{}, {"pattern": "2:4", "grid": G4}], ids=["float", "joint"])
def test_a_killed_calibration_resumes_to_the_same_weights(dense, config, tmp_path, monkeypatch, one_thread):
    whole = prune_sparsegpt(dense, config, CALIB)
    real = sparsegpt_module.prune_block
    calls = []

    def dies_on_block_1(block, data, names, cfg):
        calls.append(1)
        if len(calls) == 2:
            raise _Killed
        real(block, data, names, cfg)

    monkeypatch.setattr(sparsegpt_module, "prune_block", dies_on_block_1)
    with pytest.raises(_Killed):
        prune_sparsegpt(dense, config, CALIB, checkpoint_dir=tmp_path)
    monkeypatch.setattr(sparsegpt_module, "prune_block", real)
    resumed = prune_sparsegpt(dense, config, CALIB, checkpoint_dir=tmp_path)
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wanda_resumes_from_its_checkpoint(dense, tmp_path):
    first = prune_wanda(dense, {}, CALIB, checkpoint_dir=tmp_path)
    again = prune_wanda(dense, {}, CALIB, checkpoint_dir=tmp_path)  # every block done: loaded, not recomputed
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())


# ---- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [1.0, 0.0, -0.2, 1.5])
@pytest.mark.parametrize("cls", [MagnitudeLMConfig, WandaConfig, SparseGPTConfig])
def test_sparsity_outside_0_1_is_refused_naming_the_field(cls, sparsity):
    with pytest.raises(ConfigError, match="sparsity") as exc:
        cls(sparsity=sparsity)
    assert exc.value.field == "sparsity"
    with pytest.raises(ConfigError) as exc:
        cls.from_dict({"sparsity": sparsity})
    assert exc.value.field == "sparsity"


@pytest.mark.parametrize("pattern", ["4:2", "2:2", "0:4", "a:b", "2:4:8", "2-4", ""])
def test_bad_nm_pattern_is_refused_naming_the_field(dense, pattern):
    with pytest.raises(ConfigError, match="pattern") as exc:
        prune_wanda(dense, {"pattern": pattern}, CALIB)
    assert exc.value.field == "pattern"


def test_contradictory_or_untileable_patterns_name_the_problem(dense):
    with pytest.raises(ConfigError, match="contradicts") as exc:
        WandaConfig(pattern="2:4", sparsity=0.7)
    assert exc.value.field == "sparsity"
    with pytest.raises(ConfigError, match=r"layers\.0\.self_attn\.q_proj.*64 inputs.*M=7") as exc:
        prune_magnitude_lm(dense, {"pattern": "3:7"})
    assert exc.value.field == "pattern"
    with pytest.raises(ConfigError, match="block_size") as exc:
        SparseGPTConfig(pattern="2:4", block_size=126)
    assert exc.value.field == "block_size"
    with pytest.raises(ConfigError, match="group_size"):
        SparseGPTConfig(pattern="4:8", grid={"bits": 4, "group_size": 12})


def test_layer_patterns_outside_the_decoder_are_refused(dense):
    with pytest.raises(ConfigError, match="lm_head") as exc:
        prune_wanda(dense, {"layers": {"include": ["lm_head"]}}, CALIB)
    assert exc.value.field == "layers.include"
    out = prune_wanda(dense, {"layers": {"include": ["*.mlp.*"]}}, CALIB)
    assert not bool((out.model.layers[0].self_attn.q_proj.weight == 0).any())
    assert float((out.model.layers[0].mlp.up_proj.weight == 0).float().mean()) == 0.5
