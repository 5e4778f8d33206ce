"""A tiny Llama saved as a Hugging Face directory with a byte-level tokenizer: the recipes' stand-in for SmolLM2.

``model: {hf: <dir>, task: causal-lm}`` with ``data: {name: text}`` then runs every
language-model stage, the perplexity measurement and the CLI in seconds. The
tokenizer maps each byte to one id (256 ids + ``<eos>``), so any text tokenizes.
"""

from __future__ import annotations

from pathlib import Path

from tests.llm_fixtures import tiny_llama

VOCAB = 260  # 256 bytes + <eos>, rounded up


def byte_tokenizer():
    """A ``PreTrainedTokenizerFast``: one id per byte (GPT-2's byte alphabet), ``<eos>`` = 256."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<eos>"] = 256
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>")


def tiny_llama_dir(path: Path, seed: int = 0) -> Path:
    """Write the tiny Llama (2 blocks, width 64) and the byte tokenizer into ``path``; returns it."""
    path = Path(path)
    if not (path / "config.json").is_file():
        model = tiny_llama(seed, vocab=VOCAB)
        model.config.eos_token_id = 256
        model.generation_config.eos_token_id = 256
        model.generation_config.pad_token_id = 256
        model.save_pretrained(path)
        byte_tokenizer().save_pretrained(path)
    return path


# text settings that keep a recipe on the tiny model to a few seconds
TINY_TEXT = {"sources": ["licenses"], "window": 32, "calib_windows": 4, "test_windows": 4}


def tiny_lm_recipe(lm_dir: Path, stages: list[dict], name: str = "tiny_lm"):
    """A validated recipe running ``stages`` on the tiny Llama directory with the recipes' text data."""
    from slimtorch.pipeline import recipe_from_dict

    return recipe_from_dict(
        {
            "name": name,
            "model": {"hf": str(lm_dir), "task": "causal-lm"},
            "data": {"name": "text", "kwargs": TINY_TEXT},
            "stages": stages,
        }
    )
