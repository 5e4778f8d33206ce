"""The ``slim`` rows of ``bench/llm.py``: Deep Compression of SmolLM2-135M into one entropy-coded ``.slim`` file.

Pipeline (one process, the tokens of every other row):

1. decoder: SparseGPT's joint sparse + 4-bit mode on the decoder Linears (or GPTQ,
   for a dense comparison row), then scales rounded to float16
   (:func:`slimtorch.encode.lm.half_scales`) before any evaluation, so the file
   is bit-exact to the evaluated model;
2. embedding: each candidate grid quantizes the tied 49,152 x 576 table of the
   compressed model; the whole ``.slim`` file's size (the decoder's coded bytes,
   measured once, plus the candidate's coded embedding) and the *selection*
   perplexity of the whole compressed model are recorded. Kept: the lowest
   selection perplexity among candidates whose file fits the size budget
   (``size_budget`` x the float32 safetensors size, the issue's 10 %); none
   fits: the smallest file. The test split is never looked at for this choice;
3. ``.slim`` written, reloaded (streamed tensor by tensor), checked bit-exact
   (every code, scale, zero, float tensor and dequantized weight, and the logits
   of a test window);
4. sizes: the ``.slim`` file, its breakdown, the same model as slimtorch's int4
   safetensors folder (bit-packed codes, float32 scales, float32 embedding: the
   weight-only format quantizes Linears only) and as plain bit-packed integers
   without entropy coding (``packed_bytes``).

``bits_per_weight`` = 8 x file bytes / (elements of the quantized decoder Linears
+ elements of the embedding): everything in the file (norms, container, manifest)
is charged to those weights.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

# integer zero point with range search (as the decoder's grid), and Q4_1-style float zero (min-max, float16 zero):
# SmolLM2's float weights were dequantized from Q4_1 at group 32, which the float-zero grid reproduces
EMBEDDING_CANDIDATES = [
    {"bits": 4, "group_size": 64},
    {"bits": 4, "group_size": 128},
    {"bits": 4, "group_size": 32, "float_zero": True},
    {"bits": 4, "group_size": 64, "float_zero": True},
    {"bits": 4, "group_size": 128, "float_zero": True},
    {"bits": 3, "group_size": 32, "float_zero": True},
]


def _packed_bytes(model: torch.nn.Module) -> int:
    """The model as plain bit-packed integers.

    b bits per code, float16 scales, b-bit zeros; other tensors as float32.
    """
    from slimtorch.quantize.qembedding import QuantEmbedding
    from slimtorch.quantize.qlinear import QuantLinear

    total, seen = 0, set()
    for m in model.modules():
        if isinstance(m, (QuantLinear, QuantEmbedding)):
            zero_bits = m.bits if torch.equal(m.zeros, m.zeros.round()) else 16
            total += (m.codes.numel() * m.bits + 7) // 8 + 2 * m.scales.numel() + (m.zeros.numel() * zero_bits + 7) // 8
            if isinstance(m, QuantEmbedding):  # its float table (and the tied lm_head) is derived from the codes
                seen.add(id(m.weight))
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += 4 * p.numel()
    return total


def _payload_bytes(entry: dict) -> int:
    import numpy as np

    return sum(np.dtype(dt).itemsize * n for _, dt, n in entry["layout"])


def _choose_embedding(model, candidates, budget, selection, window, row, tmp: Path) -> dict:
    """Measure every candidate on the compressed model (selection split only); returns the chosen grid."""
    from slimtorch.encode.format import SlimReader
    from slimtorch.encode.lm import _to_quant_tensor, save_slim_lm
    from slimtorch.encode.quant_tensor import best_quant_encoding
    from slimtorch.measure.perplexity import perplexity
    from slimtorch.quantize.qembedding import EmbeddingGrid, quantize_table

    emb = model.get_input_embeddings()
    original = emb.weight.detach().clone()
    # everything but the embedding, as coded in the file: one save with the float table (its payload subtracted)
    probe = save_slim_lm(model, tmp / "probe.slim")
    reader = SlimReader(probe)
    name = next(n for n in reader.names if reader.entry(n).get("kind") == "raw" and "embed" in n)
    rest = probe.stat().st_size - _payload_bytes(reader.entry(name))
    probe.unlink()
    row["decoder_selection_perplexity"] = round(perplexity(model, selection, window, progress=False).perplexity, 3)
    table = []
    try:
        for cand in candidates:
            qw = quantize_table(original, EmbeddingGrid.from_dict(cand))
            qw.scales = qw.scales.half().float()  # as half_scales will store them
            _, sections = best_quant_encoding(_to_quant_tensor(qw))
            with torch.no_grad():
                emb.weight.copy_(qw.dequantize())  # tied: lm_head sees it too
            ppl = perplexity(model, selection, window, progress=False).perplexity
            coded = int(sum(v.nbytes for v in sections.values()))
            table.append(
                {
                    **cand,
                    "coded_bytes": coded,
                    "file_bytes_estimate": rest + coded,
                    "fits": rest + coded <= budget,
                    "selection_perplexity": round(ppl, 3),
                }
            )
            print(
                f"[slim] embedding {cand}: {coded} B, file ~{rest + coded} B, selection perplexity {ppl:.3f}",
                flush=True,
            )
    finally:
        with torch.no_grad():
            emb.weight.copy_(original)
    row["embedding_candidates"] = table
    row["decoder_and_rest_bytes"] = rest
    fits = [c for c in table if c["fits"]]
    chosen = (
        min(fits, key=lambda c: (c["selection_perplexity"], c["coded_bytes"]))
        if fits
        else min(table, key=lambda c: c["file_bytes_estimate"])
    )
    row["embedding_rule"] = (
        f"lowest selection perplexity among candidates whose file fits {budget} bytes "
        "(decoder coded once + the candidate's coded embedding)" + ("" if fits else "; none fits: the smallest file")
    )
    return {k: chosen[k] for k in ("bits", "group_size", "float_zero") if k in chosen}


def _compress_decoder(model, config: dict, calib):
    if config.get("decoder", "sparsegpt") == "gptq":
        from slimtorch.quantize.gptq import quantize_gptq

        return quantize_gptq(model, {"grid": config["grid"]}, calib, inplace=True)
    from slimtorch.prune import prune_sparsegpt

    return prune_sparsegpt(model, {"sparsity": config["sparsity"], "grid": config["grid"]}, calib, inplace=True)


def slim_row(model, config: dict, calib, selection, test, window: int, fp32_size: int, keep: str | None = None) -> dict:
    """Run the pipeline of the module docstring on ``model`` (SmolLM2 in float32); returns the row's fields.

    Args:
        fp32_size: bytes of the float32 safetensors (the size budget's base).
        keep: copy the ``.slim`` file there (otherwise it lives in a temporary folder).
    """
    from slimtorch.encode.lm import (
        half_scales,
        load_slim_lm,
        save_slim_lm,
        slim_breakdown,
    )
    from slimtorch.measure.perplexity import perplexity
    from slimtorch.quantize.qembedding import quantize_embedding
    from slimtorch.quantize.qlinear import save_quantized_lm

    row: dict = {}
    budget = int(config.get("size_budget", 0.10) * fp32_size)
    row["size_budget_bytes"] = budget
    t0 = time.perf_counter()
    model = _compress_decoder(model, config, calib)
    half_scales(model)
    row["calib_seconds"] = round(time.perf_counter() - t0, 2)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        emb_grid = _choose_embedding(
            model, config.get("embedding_candidates", EMBEDDING_CANDIDATES), budget, selection, window, row, Path(tmp)
        )
        row["embedding_grid"] = emb_grid
        row["embedding_select_seconds"] = round(time.perf_counter() - t0, 2)
        model = quantize_embedding(model, emb_grid, inplace=True)
        half_scales(model)
        path = Path(tmp) / "model.slim"
        t0 = time.perf_counter()
        save_slim_lm(model, path)
        row["encode_seconds"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        loaded = load_slim_lm(path)
        row["decode_seconds"] = round(time.perf_counter() - t0, 2)
        row["breakdown_bytes"] = slim_breakdown(path)
        if keep:
            import shutil

            shutil.copyfile(path, keep)
        row["size_bytes"] = path.stat().st_size
        row["int4_safetensors_bytes"] = sum(
            f.stat().st_size for f in save_quantized_lm(model, Path(tmp) / "int4").glob("*.safetensors")
        )
    row["bit_exact"] = _bit_exact(model, loaded, test[:window])
    del loaded
    row["packed_bytes"] = _packed_bytes(model)
    row["size_format"] = ".slim (entropy-coded sparse positions, codes, float16 scales, zeros; rANS)"
    n = row["breakdown_bytes"]["weights"]
    row["coded_weights"] = n
    row["bits_per_weight"] = round(8 * row["size_bytes"] / n, 4)
    row["bits_per_weight_definition"] = (
        "8 x .slim file bytes / (elements of the quantized decoder Linears + "
        "elements of the embedding); norms, container and manifest are included"
    )
    row["nonzero_fraction"] = round(row["breakdown_bytes"]["nonzero_weights"] / n, 4)
    row["selection_perplexity"] = round(perplexity(model, selection, window, progress=False).perplexity, 3)
    p = perplexity(model, test, window, progress=False)
    row["perplexity"] = round(p.perplexity, 3)
    row["eval_seconds"] = round(p.seconds, 1)
    return row


@torch.no_grad()
def _bit_exact(model, loaded, ids) -> dict:
    """Codes, scales, zeros, float tensors, dequantized weights (bit patterns) and logits of ``loaded`` vs ``model``."""
    from slimtorch.encode.lm import slim_state

    a, _ = slim_state(model)
    b, _ = slim_state(loaded)
    same = list(a) == list(b) and all(
        (va == b[k]) if type(va).__name__ == "QuantTensor" else torch.equal(va, b[k]) for k, va in a.items()
    )
    mods_a, mods_b = dict(model.named_modules()), dict(loaded.named_modules())
    weights = all(
        torch.equal(m.weight.view(torch.int32), mods_b[n].weight.view(torch.int32))
        for n, m in mods_a.items()
        if hasattr(m, "codes")
    )
    x = ids.reshape(1, -1)
    logits = torch.equal(model(x).logits, loaded(x).logits)
    return {
        "tensors": bool(same),
        "dequantized_weights": bool(weights),
        "logits": bool(logits),
        "tensors_compared": len(a),
    }
