"""onnxruntime-genai 0.18 as the peer of slimtorch's ONNX int4 runtime: its model builder, decode speed, perplexity.

    bash bench/peers/setup_genai.sh                  # installs onnxruntime-genai into .venv
    python bench/peers/genai_peer.py                 # builds fp32/int4/int4_all, prints JSON
    python bench/peers/genai_peer.py --kinds int4 --threads 2 --test-windows 8

``bench/llm_deploy.py`` imports :func:`build`, :func:`decode_tokens_per_s` and
:func:`perplexity` so the peer runs in the same process and on the same tokens as
slimtorch's own runtime. Three builds of SmolLM2-135M (``hf_directory()``, tied
embeddings), all ``-e cpu``:

* ``fp32``: ``-p fp32``.
* ``int4``: ``-p int4`` with ``block_size=128`` and ``nodes_to_exclude=/lm_head/MatMul``.
  The builder's defaults for a tied model are ``shared_embeddings=true``, which adds
  ``Gather`` to the quantized op types; excluding only the head therefore keeps
  ``lm_head`` float32 while the embedding table becomes its own int4
  ``GatherBlockQuantized`` (the tie is dropped: a float head and an int4 table).
  This is the like-for-like peer of a runtime that keeps ``lm_head`` float.
* ``int4_all``: ``-p int4`` with ``block_size=128`` and nothing excluded: the head
  is an int4 ``MatMulNBits`` whose weights the embedding ``GatherBlockQuantized``
  shares (smallest, fastest, least accurate).

Everything else is the builder's default (symmetric int4, ``algo_config=default``
RTN, ``accuracy_level=4`` on CPU: activations quantized to int8 inside MatMulNBits).

Decode speed (:func:`decode_tokens_per_s`) is timed with the genai API itself
(``og.Model`` / ``og.Generator``, greedy, batch 1). ``append_tokens(prompt)`` runs
the prompt forward; the first ``generate_next_token()`` only picks the argmax of
those logits, and each later one runs one cached decode step and picks a token.
So ``prefill_seconds`` is ``append_tokens`` + the first pick (time to first
token) and ``decode_tokens_per_s = (new_tokens - 1) / decode_seconds`` over the
remaining calls, i.e. KV-cached decode steps per second. By default the end of
sequence token is masked until ``new_tokens`` are generated (``min_length``), so
every run times the same number of steps.

Perplexity (:func:`perplexity`) runs the built ``model.onnx`` with a plain
``onnxruntime.InferenceSession`` on each whole window with an empty KV cache
(genai's API does not return logits for all prompt positions), and scores it
exactly as :func:`slimtorch.measure.perplexity.perplexity` does for disjoint
windows: every position but the first of each window, NLL summed in float64.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
GENAI_VERSION = "0.18.0"
BLOCK_SIZE = 128

# kind -> (builder precision, builder extra options); see the module docstring for why these exact options
KINDS: dict[str, tuple[str, dict[str, str]]] = {
    "fp32": ("fp32", {}),
    "int4": ("int4", {"block_size": str(BLOCK_SIZE), "nodes_to_exclude": "/lm_head/MatMul"}),
    "int4_all": ("int4", {"block_size": str(BLOCK_SIZE)}),
}
# Hugging Face files the builder reads from the input folder (weights, config, tokenizer)
_INPUT_FILES = (
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
    "special_tokens_map.json",
)


def cache_root() -> Path:
    """Where built models live: ``$SLIMTORCH_CACHE/genai`` (default ``~/.cache/slimtorch/genai``), outside git."""
    return Path(os.environ.get("SLIMTORCH_CACHE", Path.home() / ".cache" / "slimtorch")) / "genai"


def require_genai():
    """``onnxruntime_genai`` at the version this peer was written for, or an error saying how to get it."""
    try:
        import onnxruntime_genai as og
    except ImportError as exc:
        raise ImportError("onnxruntime-genai is not installed: run `bash bench/peers/setup_genai.sh`") from exc
    version = importlib.metadata.version("onnxruntime-genai")
    if version != GENAI_VERSION:
        raise ImportError(
            f"onnxruntime-genai {version} is installed, this peer is written for {GENAI_VERSION} "
            "(builder option names and defaults move between releases): run "
            "`bash bench/peers/setup_genai.sh`"
        )
    return og


def builder_command(
    kind: str,
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    python: str = sys.executable,
) -> list[str]:
    """The exact model-builder command line for ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown genai build kind {kind!r}; choose from {', '.join(KINDS)}")
    precision, extra = KINDS[kind]
    cmd = [
        python,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(input_dir),
        "-o",
        str(out_dir),
        "-p",
        precision,
        "-e",
        "cpu",
        "-c",
        str(cache_dir),
    ]
    if extra:
        cmd += ["--extra_options", *(f"{k}={v}" for k, v in extra.items())]
    return cmd


def builder_config(hf_config: dict) -> dict:
    """``config.json`` as the builder needs it: it dispatches on ``architectures[0]``.

    slimtorch's ``hf_directory()`` is written from the GGUF, whose config has
    ``architectures: null``; SmolLM2 is a Llama (``model_type: llama``).
    """
    cfg = dict(hf_config)
    if not cfg.get("architectures"):
        if cfg.get("model_type") != "llama":
            raise ValueError(
                f"cannot name the architecture of a {cfg.get('model_type')!r} config without "
                "'architectures'; only Llama-type folders (SmolLM2) are handled"
            )
        cfg["architectures"] = ["LlamaForCausalLM"]
    return cfg


def stage_input(hf_dir: Path, stage: Path) -> Path:
    """A builder input folder: symlinks to ``hf_dir``'s files and a config with ``architectures`` set."""
    stage.mkdir(parents=True, exist_ok=True)
    for name in _INPUT_FILES:
        if (hf_dir / name).is_file():
            (stage / name).symlink_to((hf_dir / name).resolve())
    cfg = json.loads((hf_dir / "config.json").read_text())
    (stage / "config.json").write_text(json.dumps(builder_config(cfg), indent=2))
    return stage


def model_bytes(model_dir: str | os.PathLike) -> int:
    """Bytes of the ONNX graph and its external weights (``*.onnx``, ``*.onnx.data``, ``*.data``)."""
    return sum(
        f.stat().st_size
        for f in Path(model_dir).iterdir()
        if f.is_file() and (f.suffix == ".onnx" or f.name.endswith(".data"))
    )


def build(
    kind: str, out_dir: str | os.PathLike | None = None, hf_dir: str | os.PathLike | None = None, nice: int = 10
) -> dict:
    """Build ``kind`` into ``out_dir`` (default ``cache_root()/kind``) unless it is there; return facts.

    The folder is written atomically (a finished build or none), and ``build.json``
    beside the model records the builder command and options; an existing build is
    reused as it is (delete the folder to rebuild).
    """
    from slimtorch.core.fileio import atomic_dir

    if kind not in KINDS:
        raise ValueError(f"unknown genai build kind {kind!r}; choose from {', '.join(KINDS)}")
    out = Path(out_dir) if out_dir is not None else cache_root() / kind
    if not (out / "build.json").is_file():
        require_genai()
        if hf_dir is None:
            from slimtorch.models.llm import hf_directory

            hf_dir = hf_directory()
        precision, extra = KINDS[kind]
        with tempfile.TemporaryDirectory(prefix="genai_build_") as tmp, atomic_dir(out) as dest:
            stage = stage_input(Path(hf_dir), Path(tmp) / "input")
            cmd = builder_command(kind, stage, dest, Path(tmp) / "cache")
            t0 = time.perf_counter()
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
            proc = subprocess.run(
                ["nice", "-n", str(nice), *cmd] if nice else cmd, capture_output=True, text=True, env=env, check=False
            )  # its output goes into the error below
            if proc.returncode != 0 or not (dest / "model.onnx").is_file():
                raise RuntimeError(
                    f"onnxruntime-genai builder failed for {kind} (exit {proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
                )
            facts = {
                "kind": kind,
                "precision": precision,
                "extra_options": extra,
                "execution_provider": "cpu",
                "command": "python -m onnxruntime_genai.models.builder -i <hf_directory> -o <out> "
                + " ".join(cmd[cmd.index("-p") : cmd.index("-c")])
                + ("" if not extra else " --extra_options " + " ".join(f"{k}={v}" for k, v in extra.items())),
                "input": str(hf_dir),
                "onnxruntime_genai": importlib.metadata.version("onnxruntime-genai"),
                "build_seconds": round(time.perf_counter() - t0, 1),
            }
            (dest / "build.json").write_text(json.dumps(facts, indent=2) + "\n")
    facts = json.loads((out / "build.json").read_text())
    if (facts.get("precision"), facts.get("extra_options")) != KINDS[kind]:
        raise ValueError(
            f"{out} holds a {facts.get('precision')} build with {facts.get('extra_options')}, not "
            f"{kind} = {KINDS[kind]}: delete the folder to rebuild it"
        )
    return {**facts, "model_dir": str(out), "size_bytes": model_bytes(out), **graph_facts(out)}


def graph_facts(model_dir: str | os.PathLike) -> dict:
    """What the builder made: operator counts, the quantized nodes' attributes, the ``lm_head`` op.

    Shows from the graph itself (not from the options asked for) which weights are
    int4 (``MatMulNBits`` / ``GatherBlockQuantized``), at which block size and
    ``accuracy_level``, with or without zero points, and whether the head stayed float.
    """
    import onnx

    graph = onnx.load(str(Path(model_dir) / "model.onnx"), load_external_data=False).graph
    ops: dict[str, int] = {}
    quant: set[tuple] = set()
    lm_head = None
    for node in graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
        if node.name.startswith("/lm_head/"):
            lm_head = node.op_type
        if node.op_type in ("MatMulNBits", "GatherBlockQuantized"):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            zero_points = len(node.input) > 3 and bool(node.input[3])
            quant.add(
                (node.op_type, attrs.get("bits", 4), attrs.get("block_size"), attrs.get("accuracy_level"), zero_points)
            )
    keys = ("op", "bits", "block_size", "accuracy_level", "zero_points")
    return {
        "ops": dict(sorted(ops.items())),
        "lm_head_op": lm_head,
        "quantized": [dict(zip(keys, q)) for q in sorted(quant, key=str)],
    }


def session_overlay(threads: int) -> dict:
    """The genai_config overlay that sets the decoder session's intra-op threads (and one inter-op thread)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return {
        "model": {"decoder": {"session_options": {"intra_op_num_threads": int(threads), "inter_op_num_threads": 1}}}
    }


def load_genai(model_dir: str | os.PathLike, threads: int):
    """``og.Model`` on the CPU with ``threads`` intra-op threads (an overlay over its genai_config.json)."""
    og = require_genai()

    config = og.Config(str(model_dir))
    config.clear_providers()
    config.overlay(json.dumps(session_overlay(threads)))
    return og.Model(config)


def decode_tokens_per_s(
    model_dir: str | os.PathLike,
    prompt_ids,
    new_tokens: int = 64,
    threads: int = 2,
    force_length: bool = True,
    model=None,
) -> dict:
    """Greedy batch-1 generation with the genai API; times the prompt and the cached decode steps apart.

    Returns ``decode_tokens_per_s`` (KV-cached steps per second), ``prefill_seconds``
    (prompt forward + first token), ``decode_seconds`` and the generated ids.
    """
    import onnxruntime_genai as og

    if new_tokens < 2:
        raise ValueError("need new_tokens >= 2 to time at least one decode step")
    prompt = np.asarray(prompt_ids, dtype=np.int32).reshape(-1)
    model = model if model is not None else load_genai(model_dir, threads)
    params = og.GeneratorParams(model)
    total = int(prompt.size + new_tokens)
    options = {"max_length": total, "do_sample": False, "batch_size": 1}
    if force_length:
        options["min_length"] = total
    params.set_search_options(**options)
    gen = og.Generator(model, params)
    t0 = time.perf_counter()
    gen.append_tokens(prompt.reshape(1, -1))
    gen.generate_next_token()
    t1 = time.perf_counter()
    out = [int(gen.get_next_tokens()[0])]
    while len(out) < new_tokens and not gen.is_done():
        gen.generate_next_token()
        out.append(int(gen.get_next_tokens()[0]))
    t2 = time.perf_counter()
    steps = len(out) - 1
    return {
        "decode_tokens_per_s": round(steps / (t2 - t1), 2) if steps else None,
        "prefill_seconds": round(t1 - t0, 4),
        "decode_seconds": round(t2 - t1, 4),
        "prompt_tokens": int(prompt.size),
        "new_tokens": len(out),
        "decode_steps": steps,
        "threads": threads,
        "min_length_forced": force_length,
        "generated_ids": out,
    }


def window_nll(logits: np.ndarray, ids: np.ndarray, chunk: int = 128) -> tuple[float, int]:
    """(summed NLL in nats, tokens scored) of one window: position t predicts ``ids[t + 1]``.

    The same positions and arithmetic as slimtorch's ``perplexity`` for disjoint
    windows: the first token is context only, log-softmax in float32 per chunk of
    positions, sums in float64.
    """
    import torch

    logits = torch.as_tensor(np.asarray(logits).reshape(-1, np.asarray(logits).shape[-1]))
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64).reshape(-1))
    if logits.shape[0] != ids.numel():
        raise ValueError(f"{logits.shape[0]} logit rows for {ids.numel()} tokens")
    pred, tgt = logits[:-1], ids[1:]
    total = 0.0
    for c in range(0, tgt.numel(), chunk):
        lp = torch.log_softmax(pred[c : c + chunk].float(), dim=-1)
        total -= lp.gather(1, tgt[c : c + chunk, None]).double().sum().item()
    return total, int(tgt.numel())


def feeds_for(inputs, ids: np.ndarray, kv_heads: int, head_size: int) -> dict[str, np.ndarray]:
    """Inputs of a genai decoder graph for one window with an empty KV cache (past length 0).

    ``inputs`` are ``(name, onnx type)`` pairs (``session.get_inputs()``); the cache's
    head count and head size come from genai_config.json, since the graph leaves the
    last cache dimension symbolic (``kv_cache_dim``).
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
    n = ids.shape[1]
    feeds: dict[str, np.ndarray] = {}
    for name, typ in inputs:
        dtype = np.int32 if typ == "tensor(int32)" else np.int64
        if name == "input_ids":
            feeds[name] = ids.astype(dtype)
        elif name == "attention_mask":
            feeds[name] = np.ones((1, n), dtype=dtype)
        elif name == "position_ids":
            feeds[name] = np.arange(n, dtype=dtype)[None]
        elif name.startswith("past_key_values."):
            feeds[name] = np.zeros((1, kv_heads, 0, head_size), dtype=np.float16 if "float16" in typ else np.float32)
        else:
            raise ValueError(f"unexpected input {name!r} ({typ}) in the genai graph")
    return feeds


def perplexity(model_dir: str | os.PathLike, windows, threads: int = 1) -> dict:
    """Perplexity of a genai build over disjoint windows (1-D token tensors/arrays of equal length)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(Path(model_dir) / "model.onnx"), so, providers=["CPUExecutionProvider"])
    decoder = json.loads((Path(model_dir) / "genai_config.json").read_text())["model"]["decoder"]
    inputs = [(i.name, i.type) for i in sess.get_inputs()]
    t0 = time.perf_counter()
    total, count = 0.0, 0
    for w in windows:
        ids = np.asarray(w, dtype=np.int64).reshape(-1)
        feeds = feeds_for(inputs, ids, decoder["num_key_value_heads"], decoder["head_size"])
        logits = sess.run(["logits"], feeds)[0]
        s, c = window_nll(logits[0], ids)
        total, count = total + s, count + c
    nll = total / count
    return {
        "perplexity": round(math.exp(nll), 3),
        "nll": nll,
        "tokens_scored": count,
        "windows": len(windows),
        "seconds": round(time.perf_counter() - t0, 1),
        "threads": threads,
    }


def deploy_keys(kinds: dict[str, dict]) -> dict:
    """The ``peer_genai_*`` keys of ``bench/results/llm.json`` ``deploy`` from per-kind facts.

    ``kinds[kind]`` holds ``decode_tokens_per_s`` (one value per round), and where
    measured ``perplexity`` (:func:`perplexity`'s dict) and ``size_bytes``. Speed is
    the median over rounds, with the rounds listed beside it.
    """
    out: dict = {}
    for kind, facts in kinds.items():
        rounds = [r for r in facts.get("decode_tokens_per_s", []) if r is not None]
        if rounds:
            out[f"peer_genai_{kind}_tokens_per_s"] = round(float(np.median(rounds)), 2)
            out[f"peer_genai_{kind}_tokens_per_s_rounds"] = rounds
        if facts.get("perplexity"):
            out[f"peer_genai_{kind}_perplexity"] = facts["perplexity"]["perplexity"]
        if facts.get("size_bytes") is not None:
            out[f"peer_genai_{kind}_size_bytes"] = facts["size_bytes"]
    return out


def test_windows(n: int = 32, window: int = 512) -> list:
    """The first ``n`` disjoint windows of the test stream, as ``bench/llm.py`` evaluates them."""
    sys.path.insert(0, str(REPO))
    from bench.llm import tokens

    _, _, _, test = tokens(test_windows=n)
    return [test[i * window : (i + 1) * window] for i in range(n)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for decoding")
    ap.add_argument("--ppl-threads", type=int, default=1, help="intra-op threads for perplexity")
    ap.add_argument("--test-windows", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved decode rounds over the kinds")
    ap.add_argument("--no-perplexity", action="store_true")
    args = ap.parse_args(argv)
    wins = test_windows(args.test_windows)
    prompt = np.asarray(wins[0][: args.prompt_tokens])
    kinds = args.kinds.split(",")
    report: dict = {
        "onnxruntime_genai": importlib.metadata.version("onnxruntime-genai"),
        "onnxruntime": importlib.metadata.version("onnxruntime"),
        "kinds": {k: build(k) for k in kinds},
    }
    models = {k: load_genai(report["kinds"][k]["model_dir"], args.threads) for k in kinds}
    for _ in range(args.rounds):  # rounds interleave the kinds, so a burst of load hits all of them alike
        for k in kinds:
            run = decode_tokens_per_s(None, prompt, args.new_tokens, args.threads, model=models[k])
            report["kinds"][k].setdefault("decode_rounds", []).append(run)
    for k in kinds:
        facts = report["kinds"][k]
        facts["decode_tokens_per_s"] = [r["decode_tokens_per_s"] for r in facts["decode_rounds"]]
        if not args.no_perplexity:
            facts["perplexity"] = perplexity(facts["model_dir"], wins, args.ppl_threads)
        print(json.dumps({k: {n: v for n, v in facts.items() if n != "decode_rounds"}}), file=sys.stderr, flush=True)
    report["deploy"] = deploy_keys(report["kinds"])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
