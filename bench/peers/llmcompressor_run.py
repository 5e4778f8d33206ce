"""Run llmcompressor 0.14 ``oneshot`` on a Hugging Face causal LM and write its dequantized decoder weights.

Runs with the python of llmcompressor's own environment (``bench/peers/setup_llmcompressor.sh``
makes ``.venv-llmc``); ``bench/llm_peers.py`` launches it. It never imports slimtorch.

    .venv-llmc/bin/python bench/peers/llmcompressor_run.py --model HF_DIR --calib calib.safetensors \\
        --config gptq_w4g64 --out OUT_DIR [--threads 2]

Inputs: the model directory (read in float32), a safetensors file with ``input_ids (N, L)``
(the calibration windows; all N are used, in order, unshuffled, at length L).
Configs: ``gptq_w4g128`` / ``gptq_w4g64`` (GPTQModifier, 4-bit int, symmetric, group strategy,
llmcompressor's defaults otherwise: static act-order, 1 % damping, block 128; ``lm_head`` ignored),
``sparsegpt_50`` (SparseGPTModifier, 50 % unstructured, its defaults; ``lm_head`` ignored).

Outputs in OUT_DIR: ``weights.safetensors`` (every decoder ``nn.Linear`` weight after oneshot,
dequantized by compressed-tensors' own ``fake_quantize`` from the scales/zero points it chose,
float32) and ``facts.json`` (version, config, ``calib_seconds``: wall time of ``oneshot``;
``peak_rss_mb``: ``ru_maxrss`` of this process; ``size_bytes``: the decoder tensors of its own
compressed checkpoint, from ``save_pretrained(save_compressed=True)``; ``error`` with the text of
any refusal or crash). Exit status 0 when weights were written, 2 when the peer failed (facts still written).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

CONFIGS = ("gptq_w4g128", "gptq_w4g64", "sparsegpt_50")


def rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def short_error(exc: BaseException) -> str:
    """The error's text; a long list of layers (llmcompressor's group-size refusal) is counted, not copied."""
    text = f"{type(exc).__name__}: {exc}".strip()
    items = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("- ")]
    if len(items) > 3:
        head = "\n".join(ln for ln in text.splitlines() if not ln.strip().startswith("- ")).strip()
        text = f"{head}\n  {len(items)} layers listed, e.g. {items[0][2:]}; {items[-1][2:]}"
    return text[:3000]


def recipe_for(config: str):
    if config.startswith("gptq_w4g"):
        from llmcompressor.modifiers.quantization import GPTQModifier

        group = int(config[len("gptq_w4g") :])
        scheme = {
            "targets": ["Linear"],
            "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": group},
        }
        desc = {
            "modifier": "GPTQModifier",
            "num_bits": 4,
            "symmetric": True,
            "strategy": "group",
            "group_size": group,
            "ignore": ["lm_head"],
            "defaults": "actorder static, dampening 0.01, block 128",
        }
        return GPTQModifier(config_groups={"group_0": scheme}, ignore=["lm_head"]), desc
    if config == "sparsegpt_50":
        from llmcompressor.modifiers.pruning import SparseGPTModifier

        desc = {
            "modifier": "SparseGPTModifier",
            "sparsity": 0.5,
            "mask_structure": "0:0",
            "ignore": ["re:.*lm_head"],
            "defaults": "dampening 0.01, block 128",
        }
        return SparseGPTModifier(sparsity=0.5, mask_structure="0:0", ignore=["re:.*lm_head"]), desc
    raise SystemExit(f"unknown config {config!r}; choose from {', '.join(CONFIGS)}")


def decoder_linears(model):
    import torch

    best, best_n = None, 0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) and len({type(m) for m in mod}) == 1:
            n = sum(p.numel() for p in mod.parameters())
            if n > best_n:
                best, best_n = name, n
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith(best + ".")]


def dequantized_weight(module):
    """The weight the quantized module computes with: compressed-tensors' fake_quantize with its own qparams."""
    import torch

    w = module.weight.detach()
    scheme = getattr(module, "quantization_scheme", None)
    if scheme is None or scheme.weights is None or not hasattr(module, "weight_scale"):
        return w.float(), None
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize

    zp = getattr(module, "weight_zero_point", None)
    if zp is None:
        zp = torch.zeros_like(module.weight_scale, dtype=torch.int8)
    deq = fake_quantize(w, module.weight_scale, zp, scheme.weights).float()
    return deq, float((deq - w.float()).abs().max())


def compressed_size(model, tokenizer, names: set[str]) -> tuple[int | None, dict]:
    """Bytes of the decoder tensors in llmcompressor's own compressed checkpoint (save_compressed=True)."""
    from safetensors import safe_open

    with tempfile.TemporaryDirectory(prefix="llmc_ckpt_") as d:
        model.save_pretrained(d, save_compressed=True)
        total, kinds = 0, {}
        for f in Path(d).glob("*.safetensors"):
            with safe_open(str(f), "pt") as sf:
                for key in sf.keys():
                    mod, _, suffix = key.rpartition(".")
                    if mod not in names:
                        continue
                    t = sf.get_tensor(key)
                    nbytes = t.numel() * t.element_size()
                    total += nbytes
                    kinds[suffix] = kinds.get(suffix, 0) + nbytes
        fmt = None
        cfg = Path(d) / "config.json"
        if cfg.is_file():
            qc = json.loads(cfg.read_text()).get("quantization_config") or {}
            fmt = qc.get("format") or (qc.get("sparsity_config") or {}).get("format")
            kinds["format"] = fmt
        return total, kinds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--config", required=True, choices=CONFIGS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(k, "1")
    facts = {"peer": "llmcompressor", "config": args.config, "error": None, "notes": []}
    t_start = time.perf_counter()
    try:
        facts["version"] = importlib.metadata.version("llmcompressor")
        facts["environment"] = {
            d: importlib.metadata.version(d) for d in ("torch", "transformers", "compressed-tensors")
        }
        import torch
        from datasets import Dataset
        from llmcompressor import oneshot
        from safetensors.torch import load_file, save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(args.threads)
        facts["threads"] = args.threads
        ids = load_file(args.calib)["input_ids"].to(torch.long)
        n, length = ids.shape
        facts["calib_windows"], facts["calib_window"] = int(n), int(length)
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        ds = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
        recipe, facts["recipe"] = recipe_for(args.config)
        facts["rss_before_oneshot_mb"] = round(rss_now_mb(), 1)
        t0 = time.perf_counter()
        try:
            oneshot(
                model=model,
                tokenizer=tokenizer,
                dataset=ds,
                recipe=recipe,
                num_calibration_samples=int(n),
                max_seq_length=int(length),
                shuffle_calibration_samples=False,
            )
        finally:
            facts["calib_seconds"] = round(time.perf_counter() - t0, 3)
            facts["peak_rss_mb"] = round(peak_rss_mb(), 1)
        linears = decoder_linears(model)
        weights, drift = {}, 0.0
        for name, mod in linears:
            w, d = dequantized_weight(mod)
            weights[name + ".weight"] = w.contiguous()
            drift = max(drift, d or 0.0)
        if args.config.startswith("gptq"):
            facts["notes"].append(
                f"weights written as compressed-tensors' fake_quantize(weight, scale, zero_point); "
                f"max |that - module.weight| = {drift:.3g}"
            )
        else:
            zeros = sum(int((w == 0).sum()) for w in weights.values())
            facts["sparsity"] = round(zeros / sum(w.numel() for w in weights.values()), 4)
        save_file(weights, str(out / "weights.safetensors"))
        try:
            facts["size_bytes"], facts["size_parts"] = compressed_size(model, tokenizer, {n for n, _ in linears})
        except Exception as exc:  # noqa: BLE001 - the size is a fact, not the result
            facts["size_bytes"] = None
            facts["notes"].append(f"save_pretrained(save_compressed=True) failed: {type(exc).__name__}: {exc}"[:500])
        rc = 0
    except BaseException as exc:  # noqa: BLE001 - the refusal text is the result
        if isinstance(exc, KeyboardInterrupt):
            raise
        facts["error"] = short_error(exc)
        facts["traceback"] = traceback.format_exc()[-4000:]
        rc = 2
    facts["total_seconds"] = round(time.perf_counter() - t_start, 3)
    facts.setdefault("peak_rss_mb", round(peak_rss_mb(), 1))
    (out / "facts.json").write_text(json.dumps(facts, indent=2, default=str))
    return rc


if __name__ == "__main__":
    sys.exit(main())
