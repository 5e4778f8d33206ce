"""Language models on the command line: ``slimtorch eval`` (perplexity) and ``slimtorch generate``.

    slimtorch eval runs/llm_gptq_smollm2                 # perplexity of a run's compressed model
    slimtorch eval smollm2_135m --windows 8              # the float reference
    slimtorch generate runs/llm_gptq_smollm2 --prompt "The GNU General Public License" --max-new-tokens 40
    slimtorch generate smollm2_135m --prompt "What is 7 x 8?" --chat --temperature 0.7 --top-p 0.9

A model is a compressed model folder (``slimtorch_quant.json``), a run folder of a
language-model recipe, a Hugging Face causal-LM directory, a zoo LM
(``smollm2_135m``) or ``--hf DIR --task causal-lm``.
"""

from __future__ import annotations

import argparse
import json
import sys

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
    from slimtorch.cli import _pos_int

    g = p.add_argument_group("language models (perplexity on the offline text's test split)")
    g.add_argument("--window", type=_bounded_window, default=512, help="tokens per perplexity window (default 512)")
    g.add_argument("--stride", type=_pos_int, help="step between windows (default: the window; smaller overlaps)")
    g.add_argument("--windows", type=_pos_int, default=16, help="windows to evaluate (default 16; fewer is faster)")
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
        raise ConfigError(f"--data {args.data}: a language model is evaluated on text (leave --data out)",
                          field="data")
    if args.stride is not None and args.stride > args.window:
        raise ConfigError(f"--stride {args.stride} is larger than --window {args.window}", field="stride")
    sources = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources else None
    res = evaluate_lm(model, window=args.window, stride=args.stride, windows=args.windows, sources=sources,
                      seed=args.text_seed)
    print(json.dumps({"perplexity": res["perplexity"], "nll": res["nll"], "tokens_scored": res["tokens_scored"],
                      "windows": res["windows"], "window": res["window"], "stride": res["stride"],
                      "seconds": round(res["seconds"], 2), "text": res["text"]}))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from slimtorch.core.seed import set_threads
    from slimtorch.lm import generate
    from slimtorch.measure.lm import is_causal_lm

    sampled = args.temperature is not None or args.top_p is not None
    if args.greedy and sampled:
        raise ConfigError("--greedy decodes without sampling; drop --temperature/--top-p (or --greedy)",
                          field="greedy")
    set_threads(args.threads)
    model = load_model_arg(args)
    if not is_causal_lm(model):
        raise ConfigError(f"generate needs a causal language model; '{args.model or args.hf}' is a "
                          f"{type(model).__name__}", field="model")
    g = generate(model, args.prompt, max_new_tokens=args.max_new_tokens, greedy=not sampled,
                 temperature=args.temperature if args.temperature is not None else 1.0,
                 top_p=args.top_p if args.top_p is not None else 1.0, seed=args.seed, chat=args.chat)
    print(g.text if args.only_new else args.prompt + g.text, flush=True)
    import torch

    mode = "greedy" if not sampled else f"sampling T={g.sampling['temperature']:g} top-p={g.sampling['top_p']:g}"
    print(f"[generate] {g.new_tokens} new tokens after a {g.prompt_tokens}-token prompt in {g.seconds:.2f} s: "
          f"{g.tokens_per_s:.1f} tokens/s ({mode}; PyTorch eager with KV cache, {torch.get_num_threads()} threads, "
          "prefill included)", file=sys.stderr, flush=True)
    if args.json:
        from slimtorch.core.fileio import atomic_write_json

        atomic_write_json(args.json, {**g.to_dict(), "threads": torch.get_num_threads()})
    return 0


def add_generate_parser(sub) -> argparse.ArgumentParser:
    from slimtorch.cli import _pos_float, _pos_int, add_model_args

    p = sub.add_parser("generate", help="continue a prompt with a (compressed) language model; prints tokens/s")
    add_model_args(p, "compressed LM folder, run folder, Hugging Face causal-LM folder or zoo LM")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--max-new-tokens", type=_pos_int, default=64)
    p.add_argument("--greedy", action="store_true", help="pick the most likely token (the default)")
    p.add_argument("--temperature", type=_pos_float, help="sample with this temperature")
    p.add_argument("--top-p", type=_top_p, help="sample from the smallest set of tokens with this total probability")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")
    p.add_argument("--only-new", action="store_true", help="print only the generated text, not the prompt")
    p.add_argument("--threads", type=_pos_int)
    p.add_argument("--json", help="also write text, token counts and tokens/s to this JSON file")
    p.set_defaults(fn=cmd_generate)
    return p
