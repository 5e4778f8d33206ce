"""Block-by-block calibration: inputs captured right, outputs propagated, and a killed run resumes exactly."""

from __future__ import annotations

import pytest
import torch

from slimtorch.core.blockwise import sequential
from slimtorch.core.errors import FormatError
from slimtorch.quantize.gptq import quantize_gptq
from slimtorch.quantize.qlinear import QuantLinear
from tests.llm_fixtures import tiny_ids, tiny_llama


def test_inputs_are_the_previous_blocks_outputs():
    model = tiny_llama(layers=3)
    ids = tiny_ids(4, 16)
    seen = []
    sequential(model, ids, lambda i, block, data: seen.append(torch.cat(data.hidden)), batch_size=2)
    with torch.no_grad():
        hs = model(ids, output_hidden_states=True).hidden_states
    for i in range(3):  # hidden_states[i] is the input of block i
        assert torch.allclose(seen[i], hs[i], atol=1e-5)


def test_killed_calibration_resumes_after_the_last_finished_block(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-exact comparison between runs: one intra-op thread
    try:
        _resume_check(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _resume_check(tmp_path):
    model = tiny_llama(layers=3)
    ids = tiny_ids(4, 16)
    cfg = {"grid": {"bits": 3, "group_size": 32}}
    full = quantize_gptq(model, cfg, ids)

    import slimtorch.quantize.gptq as gptq_mod

    real = gptq_mod.quantize_block
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # killed while quantizing the third block
            raise KeyboardInterrupt
        return real(*a, **k)

    gptq_mod.quantize_block = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            quantize_gptq(model, cfg, ids, checkpoint_dir=tmp_path)
    finally:
        gptq_mod.quantize_block = real
    done = []
    gptq_mod.quantize_block = lambda block, *a, **k: (done.append(1), real(block, *a, **k))
    try:
        resumed = quantize_gptq(model, cfg, ids, checkpoint_dir=tmp_path)
    finally:
        gptq_mod.quantize_block = real
    assert len(done) == 1  # only the unfinished block ran again
    for (n, a), (_, b) in zip(full.named_modules(), resumed.named_modules()):
        if isinstance(a, QuantLinear):
            assert torch.equal(a.codes, b.codes) and torch.equal(a.scales, b.scales), n
    with pytest.raises(FormatError, match="other tokens or another config"):
        quantize_gptq(model, {"grid": {"bits": 4, "group_size": 32}}, ids, checkpoint_dir=tmp_path)


def test_finished_blocks_release_their_dequantized_weights():
    model = tiny_llama(layers=2)
    q = quantize_gptq(model, {"grid": {"bits": 4, "group_size": 32}}, tiny_ids(4, 16))
    layers = [m for m in q.modules() if isinstance(m, QuantLinear)]
    assert layers and all(m._weight is None for m in layers)  # calibration peak stays one model
    with torch.no_grad():
        q(tiny_ids(1, 8))
    assert all(m._weight is not None for m in layers)  # rebuilt from the codes on use


@pytest.mark.parametrize("method", ["gptq", "sparsegpt", "wanda"])
def test_settled_children_are_reused_with_the_same_result(method, monkeypatch):
    # True-sequential methods re-run a block once per input set; BlockData.settle lets the passes after the
    # attention's last set (gate/up, down, the propagation) reuse its recorded outputs instead of recomputing
    # them. The weights and the propagated hidden states must be exactly those of recomputing.
    from slimtorch.core.blockwise import BlockData
    from slimtorch.prune import prune_sparsegpt, prune_wanda

    fns = {
        "gptq": lambda m, ids: quantize_gptq(m, {"grid": {"bits": 3, "group_size": 32}, "batch_size": 2}, ids),
        "sparsegpt": lambda m, ids: prune_sparsegpt(m, {"sparsity": 0.5, "batch_size": 2}, ids),
        "wanda": lambda m, ids: prune_wanda(m, {"sparsity": 0.5, "batch_size": 2}, ids),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from transformers.models.llama.modeling_llama import LlamaAttention

        model, ids = tiny_llama(layers=2), tiny_ids(6, 16)
        calls = []
        attention = LlamaAttention.forward  # counts computations: a reused output shadows the instance's forward
        monkeypatch.setattr(
            LlamaAttention, "forward", lambda self, *a, **k: (calls.append(1), attention(self, *a, **k))[1]
        )
        reused = fns[method](model, ids)
        n_reused, calls[:] = len(calls), []
        monkeypatch.setattr(BlockData, "settle", lambda self, block, pending: None)
        recomputed = fns[method](model, ids)
    finally:
        torch.set_num_threads(threads)
    a, b = reused.state_dict(), recomputed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # per block (2) and batch (3 of 2 sequences): the gate/up feed runs o_proj on its recorded input instead of
    # the attention, the down feed and the propagation reuse the attention's outputs; learning the children's
    # call order costs one one-sequence forward per block
    assert len(calls) - n_reused == 2 * (3 * 3 - 1), (n_reused, len(calls))


def test_linears_reading_one_tensor_form_one_input_set():
    # q/k/v read one tensor, gate/up another: one Hessian (one pass) each. Grouping by the id of a
    # temporary (a detached view) split every Linear into its own set: the same results, 7 passes, not 4.
    from slimtorch.core.blockwise import capture_inputs
    from slimtorch.quantize.gptq import input_sets

    model = tiny_llama(layers=1)
    data = capture_inputs(model, model.model.layers, tiny_ids(2, 8), 2)
    names = [n for n, m in model.model.layers[0].named_modules() if isinstance(m, torch.nn.Linear)]
    assert input_sets(model.model.layers[0], data, names) == [
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
        ["self_attn.o_proj"],
        ["mlp.gate_proj", "mlp.up_proj"],
        ["mlp.down_proj"],
    ]
