"""Perplexity of a causal language model on a token stream.

Perplexity = exp(mean negative log-likelihood per predicted token), over
fixed-length windows of the evaluation stream. With ``stride == window`` the
windows do not overlap and each window's first token is only context (the usual
"chunked" protocol of GPTQ/AWQ papers); with a smaller stride each window scores
only its last ``stride`` tokens, so every scored token sees at least
``window - stride`` tokens of context (the Hugging Face sliding-window protocol).
The NLL is accumulated in float64 and the log-softmax is computed in chunks of
positions, so a 49k vocabulary does not need the whole (L, V) matrix in float64.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.core.progress import track


@dataclass(frozen=True)
class Perplexity:
    perplexity: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    tokens_scored: int
    windows: int
    window: int
    stride: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def logits_of(output) -> torch.Tensor:
    """The logits of a model output (a Hugging Face ``ModelOutput``, a tuple or a tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def _starts(n: int, window: int, stride: int) -> list[int]:
    if n < window:
        return []
    return list(range(0, n - window + 1, stride))


@torch.no_grad()
def perplexity(
    model: nn.Module,
    tokens: torch.Tensor,
    window: int = 512,
    stride: int | None = None,
    max_windows: int | None = None,
    progress: bool = True,
) -> Perplexity:
    """Perplexity of ``model`` on a 1-D token stream (or a ``(N, L)`` batch of windows).

    Args:
        model: maps ``input_ids (1, L)`` to logits ``(1, L, V)`` (Hugging Face causal LMs do).
        window: tokens per forward.
        stride: step between windows (default ``window``: disjoint windows).
        max_windows: evaluate only the first windows (the token count is recorded).

    Raises:
        ConfigError: the stream is shorter than one window, or bad window/stride.
    """
    if tokens.dim() == 2:
        window, tokens = tokens.shape[1], tokens.reshape(-1)
    stride = window if stride is None else stride
    if window < 2 or not 1 <= stride <= window:
        raise ConfigError(
            f"need window >= 2 and 1 <= stride <= window, got window={window}, stride={stride}", field="stride"
        )
    starts = _starts(tokens.numel(), window, stride)
    if max_windows is not None:
        starts = starts[:max_windows]
    if not starts:
        raise ConfigError(
            f"the token stream ({tokens.numel()} tokens) is shorter than one window of {window}", field="window"
        )
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    total, count = 0.0, 0
    it = track(starts, "perplexity", total=len(starts)) if progress else starts
    for k, s in enumerate(it):
        ids = tokens[s : s + window].unsqueeze(0)
        logits = logits_of(model(ids))[0]
        # Score positions whose target is new in this window (all but the first for disjoint windows).
        first = 0 if k == 0 or stride == window else window - stride - 1
        pred, tgt = logits[first:-1], ids[0, first + 1 :]
        for c in range(0, tgt.numel(), 128):
            lp = torch.log_softmax(pred[c : c + 128].float(), dim=-1)
            total -= lp.gather(1, tgt[c : c + 128, None]).double().sum().item()
        count += tgt.numel()
    model.train(was_training)
    nll = total / count
    return Perplexity(math.exp(nll), nll, count, len(starts), window, stride, time.perf_counter() - t0)
