"""Text generation on an exported decoder: greedy or sampled, stop tokens, small batches, KV cache.

Prompts of different lengths are right-padded into one prefill; each row then
advances one token per step, its cache slots beyond its own length unused
(``GroupQueryAttention`` writes row ``b``'s new key at position ``len_b``). The
cache is one buffer per tensor sized for the whole generation, past and present
bound to it (:meth:`OnnxCausalLM.bind_cache`), so a step copies no cache. A row
that emits a stop token is finished (its later tokens are dropped); decoding ends
when every row has finished or ``max_new_tokens`` is reached.

Timing is split the way decoders are judged: ``prefill_s`` is the prompt's forward
(which also yields the first new token), ``decode_s`` every later step;
``decode_tokens_per_s`` counts the tokens those steps produced, over all rows.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from slimtorch.core.errors import ConfigError
from slimtorch.deploy.lm.runtime import OnnxCausalLM


@dataclass
class OnnxGeneration:
    tokens: list[list[int]]  # new tokens per row (stop token included if one was emitted)
    prompt_tokens: list[int]
    prefill_s: float
    decode_s: float
    decode_steps: int
    decode_tokens: int
    sampling: dict = field(default_factory=dict)

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "decode_tokens_per_s": self.decode_tokens_per_s}


def _pick(
    logits: np.ndarray, greedy: bool, temperature: float, top_k: int, top_p: float, rng: np.random.Generator
) -> np.ndarray:
    """Next token per row from ``logits (B, V)``."""
    if greedy:
        return logits.argmax(axis=-1)
    z = logits.astype(np.float64) / temperature
    if top_k:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(-p, axis=-1)
        sorted_p = np.take_along_axis(p, order, axis=-1)
        keep_sorted = np.cumsum(sorted_p, axis=-1) - sorted_p < top_p  # always keeps the most likely token
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=-1, keepdims=True)
    return np.array([rng.choice(p.shape[1], p=row) for row in p])


def generate_onnx(
    lm: OnnxCausalLM,
    prompts: list[list[int]],
    max_new_tokens: int = 64,
    *,
    greedy: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_tokens: list[int] | None = None,
    seed: int = 0,
) -> OnnxGeneration:
    """Continue each token-id prompt by up to ``max_new_tokens`` tokens.

    Args:
        prompts: one list of token ids per row (batch = len(prompts)).
        stop_tokens: ids that end a row (e.g. the tokenizer's EOS); ``None`` or ``[]``: never stop early.
        greedy: most likely token; otherwise sample with ``temperature``, ``top_k`` (0 = all), ``top_p``.

    Raises:
        ConfigError: empty prompts, bad sampling settings, or more positions than the export holds.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ConfigError("every prompt needs at least one token", field="prompt")
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}", field="max_new_tokens")
    if not greedy and (temperature <= 0 or not 0 < top_p <= 1 or top_k < 0):
        raise ConfigError(
            f"sampling needs temperature > 0, 0 < top_p <= 1, top_k >= 0 (got {temperature}, {top_p}, {top_k})",
            field="sampling",
        )
    lengths = np.array([len(p) for p in prompts])
    if lengths.max() + max_new_tokens > lm.max_positions:
        raise ConfigError(
            f"prompt ({lengths.max()}) + {max_new_tokens} new tokens exceed the {lm.max_positions} "
            "positions the model was exported with",
            field="max_new_tokens",
        )
    B, width = len(prompts), int(lengths.max())
    ids = np.zeros((B, width), dtype=np.int64)
    mask = np.zeros((B, width), dtype=np.int64)
    for b, p in enumerate(prompts):
        ids[b, : len(p)] = p
        mask[b, : len(p)] = 1
    stops = set(stop_tokens or [])
    rng = np.random.default_rng(seed)

    def pick(lg):
        return _pick(lg, greedy, temperature, top_k, top_p, rng)

    t0 = time.perf_counter()
    binding = lm.bind_cache(B, width + max_new_tokens)  # the whole generation's cache, written in place
    logits = lm.step_bound(binding, ids, mask)
    token = pick(logits[np.arange(B), lengths - 1])
    prefill = time.perf_counter() - t0
    out: list[list[int]] = [[int(t)] for t in token]
    done = np.array([int(t) in stops for t in token])
    steps = produced = 0
    t1 = time.perf_counter()
    while len(out[0]) < max_new_tokens and not done.all():
        width += 1
        count = lengths + len(out[0])  # tokens per row after this step
        mask = (np.arange(width)[None, :] < count[:, None]).astype(np.int64)
        logits = lm.step_bound(binding, token[:, None].astype(np.int64), mask)
        token = pick(logits[:, 0])
        steps += 1
        for b in range(B):
            out[b].append(int(token[b]))
            if not done[b]:
                produced += 1
                done[b] = int(token[b]) in stops
    decode = time.perf_counter() - t1
    for b in range(B):  # drop what a row produced after its stop token
        for k, t in enumerate(out[b]):
            if t in stops:
                out[b] = out[b][: k + 1]
                break
    sampling = (
        {"greedy": greedy}
        if greedy
        else {"greedy": False, "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
    )
    return OnnxGeneration(out, lengths.tolist(), prefill, decode, steps, produced, sampling)


def speed_once(lm: OnnxCausalLM, prompt: list[int], prefill: list[int], new_tokens: int) -> dict:
    """One batch-1 measurement: greedy decode tokens/s after ``prompt`` (stop tokens off, so every run
    times ``new_tokens``), and the latency of one ``prefill`` forward. Benchmarks interleave these."""
    g = generate_onnx(lm, [prompt], new_tokens)
    ids = np.asarray([prefill], dtype=np.int64)
    t0 = time.perf_counter()
    lm.step(ids, np.ones_like(ids), lm.empty_past(1))
    return {
        "decode_tokens_per_s": g.decode_tokens_per_s,
        "prefill_ms": 1e3 * (time.perf_counter() - t0),
        "tokens": g.tokens[0],
    }
