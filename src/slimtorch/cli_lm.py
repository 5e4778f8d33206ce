"""Language models on the command line: ``slimtorch eval`` (perplexity) and ``slimtorch generate``.

    slimtorch eval runs/llm_gptq_smollm2                 # perplexity of a run's compressed model
    slimtorch eval smollm2_135m --windows 8              # the float reference
    slimtorch generate runs/llm_gptq_smollm2 --prompt "The GNU General Public License" --max-new-tokens 40
    slimtorch generate smollm2_135m --prompt "What is 7 x 8?" --chat --temperature 0.7 --top-p 0.9
    slimtorch export-lm runs/llm_gptq_smollm2 out/smollm2_int4     # int4 ONNX Runtime decoder with a KV cache
    slimtorch export-lm runs/llm_gptq_smollm2 smollm2_q4.gguf --format gguf   # llama.cpp / transformers file
    slimtorch generate out/smollm2_int4 --prompt "What is 7 x 8?" --chat   # runs the ONNX file
    slimtorch eval out/smollm2_int4 --windows 8                          # perplexity of the deployed file

A model is a compressed model folder (``slimtorch_quant.json``), an exported ONNX
decoder (``slimtorch_onnx.json``; run by ONNX Runtime), a run folder of a
language-model recipe, a Hugging Face causal-LM directory, a zoo LM
(``smollm2_135m``) or ``--hf DIR --task causal-lm``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from slimtorch.core.errors import ConfigError


def _top_p(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return v


def add_lm_eval_args(p: argparse.ArgumentParser) -> None:
    """Perplexity options of ``slimtorch eval`` (used when the model is a causal language model)."""
    from slimtorch.cli import positive_int

    g = p.add_argument_group("language models (perplexity on the offline text's test split)")
    g.add_argument("--window", type=_bounded_window, default=512, help="tokens per perplexity window (default 512)")
    g.add_argument("--stride", type=positive_int, help="step between windows (default: the window; smaller overlaps)")
    g.add_argument("--windows", type=positive_int, default=16, help="windows to evaluate (default 16; fewer is faster)")
    g.add_argument("--sources", help="comma-separated text sources (default: gsm8k,licenses,fortunes,jargon)")
    g.add_argument("--text-seed", type=int, default=0, help="the split's seed (recipes use 0)")


def _bounded_window(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2, got {text}")
    return v


def onnx_folder(path) -> Path | None:
    """The exported ONNX decoder ``path`` names (itself, or a run folder's last ``NN_onnx_lm/onnx``), or ``None``."""
    if not path:
        return None
    p = Path(path)
    if (p / "slimtorch_onnx.json").is_file():
        return p
    found = sorted(p.glob("*/onnx/slimtorch_onnx.json")) if p.is_dir() else []
    return found[-1].parent if found else None


def load_onnx_arg(args: argparse.Namespace):
    """(:class:`~slimtorch.deploy.lm.OnnxCausalLM`, its ``nn.Module`` view with the tokenizer) if the model is ONNX."""
    folder = None if args.class_ref or args.hf else onnx_folder(args.model)
    if folder is None:
        return None, None
    from slimtorch.deploy.lm import OnnxCausalLM

    lm = OnnxCausalLM(folder, threads=getattr(args, "threads", None))
    module = lm.as_module()
    if lm.tokenizer is not None:
        module.slimtorch_tokenizer = lm.tokenizer
    return lm, module


def load_model_arg(args: argparse.Namespace):
    """The model the command line names, language-model folders included."""
    from slimtorch.lm import lm_folder, load_lm_folder

    if args.model and not args.class_ref and not args.hf and lm_folder(args.model) is not None:
        return load_lm_folder(args.model)
    from slimtorch.cli import model_from_args

    return model_from_args(args)  # zoo LMs and --hf DIR --task causal-lm find their tokenizer when needed


def eval_lm(args: argparse.Namespace, model) -> int:
    from slimtorch.lm import evaluate_lm

    if args.data not in (None, "text"):
        raise ConfigError(f"--data {args.data}: a language model is evaluated on text (leave --data out)", field="data")
    if args.stride is not None and args.stride > args.window:
        raise ConfigError(f"--stride {args.stride} is larger than --window {args.window}", field="stride")
    sources = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources else None
    res = evaluate_lm(
        model, window=args.window, stride=args.stride, windows=args.windows, sources=sources, seed=args.text_seed
    )
    print(
        json.dumps(
            {
                "perplexity": res["perplexity"],
                "nll": res["nll"],
                "tokens_scored": res["tokens_scored"],
                "windows": res["windows"],
                "window": res["window"],
                "stride": res["stride"],
                "seconds": round(res["seconds"], 2),
                "text": res["text"],
            }
        )
    )
    return 0


def generate_onnx_cli(args: argparse.Namespace, lm, sampled: bool) -> int:
    """``slimtorch generate`` on an exported ONNX decoder."""
    from slimtorch.deploy.lm.generate import generate_onnx

    tok = lm.tokenizer
    if tok is None:
        raise ConfigError(f"{lm.directory} has no tokenizer; export with the model's tokenizer", field="model")
    from slimtorch.lm import prompt_ids

    ids = prompt_ids(tok, args.prompt, args.chat)
    stops = [
        t for t in {tok.eos_token_id, *(getattr(tok, "all_special_ids", []) if args.chat else [])} if t is not None
    ]
    g = generate_onnx(
        lm,
        [ids],
        args.max_new_tokens,
        greedy=not sampled,
        temperature=args.temperature if args.temperature is not None else 1.0,
        top_k=args.top_k or 0,
        top_p=args.top_p if args.top_p is not None else 1.0,
        seed=args.seed,
        stop_tokens=stops,
    )
    new = tok.decode(g.tokens[0], skip_special_tokens=True)
    print(new if args.only_new else args.prompt + new, flush=True)
    threads = args.threads or "default"
    print(
        f"[generate] {len(g.tokens[0])} new tokens after a {len(ids)}-token prompt: "
        f"prefill {g.prefill_s * 1e3:.0f} ms, "
        f"decode {g.decode_tokens_per_s:.1f} tokens/s (ONNX Runtime, {threads} threads, KV cache)",
        file=sys.stderr,
        flush=True,
    )
    if args.json:
        from slimtorch.core.fileio import atomic_write_json

        atomic_write_json(args.json, {**g.to_dict(), "text": new, "runtime": "onnxruntime", "threads": args.threads})
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from slimtorch.core.seed import set_threads
    from slimtorch.lm import generate
    from slimtorch.measure.lm import is_causal_lm

    sampled = args.temperature is not None or args.top_p is not None or args.top_k is not None
    if args.greedy and sampled:
        raise ConfigError(
            "--greedy decodes without sampling; drop --temperature/--top-p/--top-k (or --greedy)", field="greedy"
        )
    lm, _ = load_onnx_arg(args)
    if lm is not None:
        return generate_onnx_cli(args, lm, sampled)
    if args.top_k is not None:
        raise ConfigError(
            "--top-k is for exported ONNX models; PyTorch generation here samples with --temperature / --top-p",
            field="top_k",
        )
    set_threads(args.threads)
    model = load_model_arg(args)
    if not is_causal_lm(model):
        raise ConfigError(
            f"generate needs a causal language model; '{args.model or args.hf}' is a {type(model).__name__}",
            field="model",
        )
    g = generate(
        model,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        greedy=not sampled,
        temperature=args.temperature if args.temperature is not None else 1.0,
        top_p=args.top_p if args.top_p is not None else 1.0,
        seed=args.seed,
        chat=args.chat,
    )
    print(g.text if args.only_new else args.prompt + g.text, flush=True)
    import torch

    mode = "greedy" if not sampled else f"sampling T={g.sampling['temperature']:g} top-p={g.sampling['top_p']:g}"
    print(
        f"[generate] {g.new_tokens} new tokens after a {g.prompt_tokens}-token prompt in {g.seconds:.2f} s: "
        f"{g.tokens_per_s:.1f} tokens/s ({mode}; PyTorch eager with KV cache, {torch.get_num_threads()} threads, "
        "prefill included)",
        file=sys.stderr,
        flush=True,
    )
    if args.json:
        from slimtorch.core.fileio import atomic_write_json

        atomic_write_json(args.json, {**g.to_dict(), "threads": torch.get_num_threads()})
    return 0


def add_generate_parser(sub) -> argparse.ArgumentParser:
    from slimtorch.cli import add_model_args, positive_float, positive_int

    p = sub.add_parser("generate", help="continue a prompt with a (compressed) language model; prints tokens/s")
    add_model_args(p, "compressed LM folder, run folder, Hugging Face causal-LM folder or zoo LM")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--max-new-tokens", type=positive_int, default=64)
    p.add_argument("--greedy", action="store_true", help="pick the most likely token (the default)")
    p.add_argument("--temperature", type=positive_float, help="sample with this temperature")
    p.add_argument("--top-p", type=_top_p, help="sample from the smallest set of tokens with this total probability")
    p.add_argument("--top-k", type=positive_int, help="sample among the k most likely tokens (exported ONNX models)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")
    p.add_argument("--only-new", action="store_true", help="print only the generated text, not the prompt")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--json", help="also write text, token counts and tokens/s to this JSON file")
    p.set_defaults(fn=cmd_generate)
    return p


def cmd_export_lm(args: argparse.Namespace) -> int:
    """``slimtorch export-lm MODEL OUT``: the decoder as one ONNX graph with a KV cache (int4/int8 MatMulNBits)."""
    from slimtorch.deploy.lm import LMExportConfig, export_onnx, onnx_size_bytes
    from slimtorch.measure.lm import is_causal_lm

    cfg = LMExportConfig.from_dict(
        {
            "embedding_bits": None if args.embedding_bits == "none" else int(args.embedding_bits),
            "embedding_group_size": args.embedding_group_size,
            "accuracy_level": args.accuracy_level,
            **({"max_positions": args.max_positions} if args.max_positions else {}),
        },
        "export-lm",
    )
    model = load_model_arg(args)
    if not is_causal_lm(model):
        raise ConfigError(
            f"export-lm needs a causal language model; '{args.model or args.hf}' is a {type(model).__name__}",
            field="model",
        )
    from slimtorch.data.lm_text import tokenizer_of

    try:
        tok = tokenizer_of(model)
    except ConfigError:
        tok = None
    if args.format == "gguf":  # llama.cpp / transformers: the codes in Q4_1 / Q8_0 blocks
        from slimtorch.export.gguf import export_gguf

        out = export_gguf(model, args.out)
        print(json.dumps({"out": str(out), "size_bytes": out.stat().st_size, "format": "gguf"}))
        return 0
    out = export_onnx(model, args.out, cfg, tok)
    print(json.dumps({"out": str(out), "size_bytes": onnx_size_bytes(out), "config": cfg.to_dict()}))
    return 0


def add_export_parser(sub) -> argparse.ArgumentParser:
    from slimtorch.cli import add_model_args, positive_int

    p = sub.add_parser(
        "export-lm",
        help="export a (compressed) causal LM to ONNX Runtime: int4/int8 MatMulNBits, "
        "KV cache; run it with slimtorch generate / eval",
    )
    add_model_args(p, "compressed LM folder, run folder, Hugging Face causal-LM folder or zoo LM")
    p.add_argument(
        "out",
        help="new folder for model.onnx (+ weights, tokenizer), or a new .gguf file with "
        "--format gguf; never overwritten",
    )
    p.add_argument(
        "--format",
        choices=["onnx", "gguf"],
        default="onnx",
        help="onnx: ONNX Runtime int4/int8 decoder (default); gguf: llama.cpp file (Q4_1 / Q8_0 blocks "
        "holding the same codes), which transformers also loads",
    )
    p.add_argument(
        "--embedding-bits",
        choices=["4", "8", "none"],
        default="8",
        help="bits of the (tied) embedding / lm_head table; none keeps it float32 (default 8)",
    )
    p.add_argument("--embedding-group-size", type=positive_int, default=32)
    p.add_argument(
        "--accuracy-level",
        type=int,
        choices=[0, 1, 2, 3, 4],
        default=4,
        help="MatMulNBits compute: 4 = int8 activations (fast), 0 = float (exact to the stored weights)",
    )
    p.add_argument("--max-positions", type=positive_int, help="longest prompt + generation (rotary cache length)")
    p.set_defaults(fn=cmd_export_lm)
    return p
