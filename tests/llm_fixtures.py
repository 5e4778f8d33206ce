"""A tiny randomly initialised Llama and token ids: the unit-test stand-in for SmolLM2.

Same architecture family as SmolLM2-135M (grouped-query attention, SwiGLU MLP,
RMSNorm, rotary positions, tied embeddings) at a size where block-by-block
calibration takes milliseconds. Seeded, and built inside ``fork_rng`` so making
one never moves the caller's global random state.
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 256


def tiny_llama(
    seed: int = 0,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    vocab: int = VOCAB,
) -> nn.Module:
    """A ``LlamaForCausalLM`` in float32, eval mode, with weights drawn from ``seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model.float().eval()


def tiny_ids(n: int, length: int, seed: int = 0, vocab: int = VOCAB) -> torch.Tensor:
    """``(n, length)`` int64 token ids, uniform over the vocabulary, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, length), generator=g)
