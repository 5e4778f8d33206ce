"""The exact refit of kept weights (slimtorch.prune.refit) and its ``refit`` option in Wanda and SparseGPT."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.prune import MagnitudeLMConfig, SparseGPTConfig, WandaConfig, prune_sparsegpt, prune_wanda
from slimtorch.prune import refit as refit_module
from slimtorch.prune.lm_common import keep_mask
from slimtorch.prune.refit import refit_weight
from slimtorch.prune.sparsegpt import sparsegpt_weight
from slimtorch.prune.wanda import wanda_scores
from tests.llm_fixtures import tiny_llama
from tests.prune.test_llm_pruning import CALIB, _block0_inputs, decoder_weights


@pytest.fixture(scope="module", autouse=True)
def one_thread_for_the_module():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dense() -> nn.Module:
    return tiny_llama(seed=0)


def _inputs(rows: int = 24, cols: int = 40, n: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cols, generator=g) * torch.rand(cols, generator=g) * 3
    x[:, 3] *= 15  # an outlier input channel, as decoders have
    return x, torch.randn(rows, cols, generator=g)


def _lstsq_reference(w: torch.Tensor, keep: torch.Tensor, x: torch.Tensor, damp: float) -> torch.Tensor:
    """Per row: min ‖x wᵀ - x_S ŵ_Sᵀ‖² + λ‖w_S - ŵ_S‖² + λ‖w_P‖², as one stacked least-squares problem (float64)."""
    x, w = x.double(), w.double()
    lam = damp * float(torch.diag(x.T @ x).mean())
    out = torch.zeros_like(w)
    for r in range(w.shape[0]):
        S = keep[r]
        k = int(S.sum())
        A = torch.cat([x[:, S], lam**0.5 * torch.eye(k, dtype=torch.float64)])
        b = torch.cat([x @ w[r], lam**0.5 * w[r, S]])
        out[r, S] = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    return out.float()


@pytest.mark.parametrize("damp", [1e-6, 0.05])
def test_refit_equals_a_per_row_lstsq_reference(damp):
    x, w = _inputs()
    # SparseGPT's unstructured mask: rows keep different numbers of inputs (the padded batched path)
    _, keep, _ = sparsegpt_weight(w, x.double().T @ x.double(), SparseGPTConfig(block_size=8))
    assert keep.sum(1).unique().numel() > 1
    got = refit_weight(w, keep, x.double().T @ x.double(), damp)
    torch.testing.assert_close(got, _lstsq_reference(w, keep, x, damp), rtol=1e-4, atol=1e-4)
    assert torch.equal(got[~keep], torch.zeros(int((~keep).sum())))


def test_rows_split_into_chunks_give_the_same_weights(monkeypatch):
    x, w = _inputs(rows=30)
    H = x.double().T @ x.double()
    _, keep, _ = sparsegpt_weight(w, H, SparseGPTConfig(block_size=8))
    whole = refit_weight(w, keep, H, 0.01)
    monkeypatch.setattr(refit_module, "CHUNK_BYTES", 4 * 20 * 20 * 3)  # 3 rows per chunk
    torch.testing.assert_close(refit_weight(w, keep, H, 0.01), whole, rtol=1e-5, atol=1e-5)


def test_dead_inputs_and_silent_layers_are_solved_without_nans():
    x, w = _inputs()
    x[:, 5] = 0  # an input that is always 0
    H = x.double().T @ x.double()
    keep = torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) > 0.5
    got = refit_weight(w, keep, H, 0.01)
    assert torch.isfinite(got).all() and torch.equal(got == 0, ~keep | (got == 0))
    assert torch.equal(refit_weight(w, keep, torch.zeros_like(H), 0.01), w * keep)  # never any input: mask only


def _damped_error(w: torch.Tensor, new: torch.Tensor, H: torch.Tensor, damp: float) -> float:
    Hd = H + damp * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
    d = (w - new).double()
    return float(torch.einsum("ri,ij,rj->", d, Hd, d))


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
@pytest.mark.parametrize("layer", ["self_attn.q_proj", "mlp.down_proj"])
def test_refit_keeps_sparsegpts_mask_and_never_reconstructs_worse(dense, layer, pattern):
    x = _block0_inputs(dense)[layer]
    w = dense.model.layers[0].get_submodule(layer).weight.detach()
    H = x.double().T @ x.double()
    obs, keep, _ = sparsegpt_weight(w, H, SparseGPTConfig(pattern=pattern))
    new, keep2, _ = sparsegpt_weight(w, H, SparseGPTConfig(pattern=pattern, refit=True, refit_damp=0.01))
    assert torch.equal(keep, keep2) and torch.equal(new == 0, ~keep)  # same mask, every kept weight non-zero
    # the objective both minimise (same damping): the refit is its exact minimiser over this mask
    assert _damped_error(w, new, H, 0.01) <= _damped_error(w, obs, H, 0.01) * (1 + 1e-6)
    # and the plain output error on the calibration inputs, with a ridge too small to matter
    tiny, _, _ = sparsegpt_weight(w, H, SparseGPTConfig(pattern=pattern, refit=True, refit_damp=1e-6))
    plain = lambda v: float(((x @ (w - v).T) ** 2).sum())  # noqa: E731
    assert plain(tiny) <= plain(obs) * (1 + 1e-5), (plain(tiny), plain(obs))


@pytest.mark.parametrize("layer", ["self_attn.o_proj", "mlp.gate_proj"])
def test_refit_of_wandas_mask_beats_wandas_kept_weights_clearly(dense, layer):
    x = _block0_inputs(dense)[layer]
    w = dense.model.layers[0].get_submodule(layer).weight.detach()
    keep = keep_mask(wanda_scores(w, x.double().pow(2).sum(0)), WandaConfig())
    new = refit_weight(w, keep, x.double().T @ x.double(), 0.01)
    plain = lambda v: float(((x @ (w - v).T) ** 2).sum())  # noqa: E731
    assert torch.equal(new == 0, ~keep)
    assert plain(new) < 0.9 * plain(w * keep), (plain(new), plain(w * keep))


# ---- whole models --------------------------------------------------------------------------------------------


def test_wanda_refit_keeps_wandas_masks_and_changes_the_kept_weights(dense):
    # From the dense block (not true-sequential) block 0's inputs do not depend on the refit: same masks.
    plain = prune_wanda(dense, {"true_sequential": False}, CALIB)
    refit = prune_wanda(dense, {"true_sequential": False, "refit": True}, CALIB)
    for name, lin in plain.model.layers[0].named_modules():
        if isinstance(lin, nn.Linear):
            new = refit.model.layers[0].get_submodule(name).weight
            assert torch.equal(new == 0, lin.weight == 0), name
            assert not torch.allclose(new, lin.weight), name  # the kept weights moved


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_refit_keeps_the_sparsity_and_the_nm_pattern(dense, method):
    prune = prune_wanda if method == "wanda" else prune_sparsegpt
    out = prune(dense, {"sparsity": 0.3, "refit": True}, CALIB)
    for name, w in decoder_weights(out).items():
        if method == "wanda":
            assert torch.all((w == 0).sum(1) == round(0.3 * w.shape[1])), name
        else:  # SparseGPT's count per 128-column block (here one block)
            assert int((w == 0).sum()) == round(0.3 * w.numel()), name
    out = prune(dense, {"pattern": "2:4", "refit": True}, CALIB)
    for name, w in decoder_weights(out).items():
        assert torch.all((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) == 2), name


def test_refit_lowers_the_calibration_loss_of_a_pruned_model(dense):
    def loss(m):
        with torch.no_grad():
            return float(m(CALIB[:8], labels=CALIB[:8]).loss)

    for prune in (prune_wanda, prune_sparsegpt):
        assert loss(prune(dense, {"refit": True}, CALIB)) < loss(prune(dense, {}, CALIB)), prune.__name__


# ---- config --------------------------------------------------------------------------------------------------


def test_refit_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="refit") as exc:
        SparseGPTConfig(refit=True, grid={"bits": 4, "group_size": 32})
    assert exc.value.field == "refit"
    for bad in (0.0, -0.1, 2.0):
        with pytest.raises(ConfigError) as exc:
            WandaConfig.from_dict({"refit": True, "refit_damp": bad})
        assert exc.value.field == "refit_damp"
    with pytest.raises(ConfigError) as exc:  # magnitude pruning sees no inputs: nothing to refit on
        MagnitudeLMConfig.from_dict({"refit": True})
    assert exc.value.field == "refit"
    assert SparseGPTConfig.from_dict(SparseGPTConfig(refit=True).to_dict()).refit  # round trip
