"""Layer-streamed calibration: one decoder block in memory at a time, read from safetensors, written out as it finishes.

:func:`slimtorch.core.blockwise.sequential` already calibrates block by block,
but on a model that is fully loaded, so its peak is the model plus the method.
The users' complaint is that calibration needs more memory than the model; here
the model never exists in memory:

1. the model is built from its ``config.json`` with parameters on the meta
   device (no storage; buffers such as rotary frequencies are real), and only the
   small pieces outside the blocks that run before block 0 are read (e.g. GPT-2's
   position table); the token embedding is never loaded: only the rows of the
   calibration tokens are read, and the model runs on ``inputs_embeds``;
2. for each block: its tensors are read from the file(s) into the meta block
   (``load_state_dict(assign=True)``), the method changes it on the captured
   inputs, the block's outputs become the next block's inputs, its new state is
   written to a shard in the work folder, and the block goes back to meta;
3. the output folder (the same files as
   :func:`slimtorch.quantize.qlinear.save_quantized_lm`) is assembled by copying
   the shards and the untouched tensors (embedding, final norm) chunk by chunk.

Files are read with ``seek``/``readinto`` (:mod:`slimtorch.core.stfile`), not
memory-mapped, so what was read does not stay resident. The calibration
hidden states live in the work folder too, one file per batch (:class:`DiskHidden`),
so peak memory is the imports, one block, the method's statistics and the
activations of one batch, whatever the number of calibration sequences. With
``checkpoint_dir`` the work folder (shards, hidden states, progress) is kept, so
a killed calibration resumes after the last finished block.

The blocks see exactly what they see in the in-memory path (same embedding
rows, same rotary tensors and masks, same float32 weights), so a method's
result is identical, not merely close (tested on a tiny Llama).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from slimtorch.core.blockwise import BlockData, capture_inputs
from slimtorch.core.errors import ConfigError, DataNotFoundError, FormatError, UnsupportedModelError
from slimtorch.core.fileio import atomic_dir, atomic_write_json
from slimtorch.core.progress import track
from slimtorch.core.stfile import Entry, Out, copy_out, read_header, read_rows, read_tensor, tensor_out, write_file

# files of a model folder that are weights (never copied into the output as they are)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5")
_WEIGHT_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json", "config.json")


class FolderWeights:
    """The tensors of a Hugging Face folder by the model's state-dict names (one file or an index of shards).

    Checkpoints may store names without the base-model prefix (GPT-2: ``h.0…`` for
    ``transformer.h.0…``); both spellings are looked up.
    """

    def __init__(self, directory: str | os.PathLike, base_prefix: str = ""):
        self.directory = Path(directory)
        index = self.directory / "model.safetensors.index.json"
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        else:
            files = sorted(p.name for p in self.directory.glob("*.safetensors"))
        if not files:
            raise DataNotFoundError(
                f"{self.directory} has no safetensors weights; layer-streamed calibration reads safetensors "
                "(convert the checkpoint once with save_pretrained(safe_serialization=True))"
            )
        self.entries: dict[str, Entry] = {}
        for f in files:
            self.entries.update(read_header(self.directory / f)[0])
        self.base_prefix = base_prefix

    def entry(self, name: str) -> Entry:
        if name in self.entries:
            return self.entries[name]
        head = self.base_prefix + "."
        if self.base_prefix and name.startswith(head) and name[len(head) :] in self.entries:
            return self.entries[name[len(head) :]]
        raise FormatError(f"{self.directory}: the model needs tensor {name}, which its safetensors files lack")

    def get(self, name: str) -> torch.Tensor:
        """The tensor in float32 (floating tensors) or as stored."""
        t = read_tensor(self.entry(name))
        return t.float() if t.is_floating_point() else t


def skeleton(directory: str | os.PathLike, attn_implementation: str | None = None) -> nn.Module:
    """The causal LM of ``directory``'s ``config.json`` in float32, parameters on the meta device, buffers real.

    ``attn_implementation``: transformers' attention kernel (``None``: its default, ``sdpa``).
    """
    from slimtorch.models.llm import offline_env

    offline_env()
    try:
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise DataNotFoundError(
            "layer-streamed calibration needs transformers and accelerate: bash scripts/setup.sh"
        ) from None
    if not (Path(directory) / "config.json").is_file():
        raise DataNotFoundError(f"{directory} is not a Hugging Face model folder (no config.json)")
    config = AutoConfig.from_pretrained(directory)
    with init_empty_weights(include_buffers=False):
        kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, **kw)
    return model.eval()


def tied_names(model: nn.Module) -> dict[str, str]:
    """State-dict names that repeat an earlier tensor (shared parameters, tied embeddings) -> the first name."""
    first: dict[int, str] = {}
    tied = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) in first:
            tied[name] = first[id(t)]
        else:
            first[id(t)] = name
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
    if getattr(cfg, "tie_word_embeddings", False) and out_emb is not None and out_emb is not in_emb:
        # on the meta device transformers does not tie; the saved model will be
        names = {id(m): n for n, m in model.named_modules()}
        tied[f"{names[id(out_emb)]}.weight"] = f"{names[id(in_emb)]}.weight"
    return tied


def _module_names(model: nn.Module, *mods: nn.Module | None) -> set[str]:
    ids = {id(m) for m in mods if m is not None}
    return {n for n, m in model.named_modules() if id(m) in ids}


def _fingerprint(ids: torch.Tensor, tag: str, source: Path) -> str:
    h = hashlib.sha256(ids.numpy().tobytes())
    h.update(tag.encode())
    h.update(str(source.resolve()).encode())
    return h.hexdigest()[:16]


BlockFn = Callable[[int, nn.Module, BlockData], None]
SaveFn = Callable[[nn.Module], tuple[dict[str, torch.Tensor], dict]]
# quantizes a Linear outside the blocks (e.g. an untied lm_head): (name, weight, bias) -> (tensors, layer info)
OutsideFn = Callable[[str, torch.Tensor, torch.Tensor | None], tuple[dict[str, torch.Tensor], dict]]


def calibrate_streamed(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    ids: torch.Tensor,
    process: Callable[[nn.Module], BlockFn],
    save_block: SaveFn,
    *,
    outside: dict[str, OutsideFn] | Callable[[nn.Module], dict[str, OutsideFn]] | None = None,
    batch_size: int = 8,
    tag: str = "",
    checkpoint_dir: str | os.PathLike | None = None,
    metadata: dict[str, str] | None = None,
    quant_json: Callable[[dict], dict] | None = None,
    attn_implementation: str | None = None,
    description: str = "calibrating (streamed)",
) -> Path:
    """Calibrate the causal LM in folder ``source`` block by block from disk; write the result to ``out_dir``.

    Args:
        source: a Hugging Face causal-LM folder with safetensors weights.
        out_dir: the new folder (must not exist; written atomically).
        ids: calibration token ids ``(N, L)``.
        process: given the meta-device model, returns ``process(index, block, inputs)``, which
            changes one loaded block in place (the same function the in-memory path uses).
        save_block: ``block -> (tensors, layer info)`` with block-relative names
            (:func:`slimtorch.quantize.qlinear.quantized_state`).
        outside: Linears outside the blocks to transform from their weight alone, by name
            (or a function of the meta model returning them).
        checkpoint_dir: keep shards, hidden states and progress there, and resume from them.
        quant_json: builds the ``slimtorch_quant.json`` content from the merged layer info.
        attn_implementation: the attention kernel the blocks run with (``None``: transformers'
            default, ``sdpa``, as :func:`slimtorch.models.llm.load_causal_lm` loads). Kernels round
            differently, so to reproduce a calibration of a loaded model, use the one it was loaded
            with (recipes load ``eager``).

    Returns:
        ``out_dir``.

    Raises:
        FileExistsError: ``out_dir`` exists.
        FormatError: a checkpoint of other tokens, config or model; a tensor missing from the files.
    """
    from slimtorch.models.llm import decoder_blocks
    from slimtorch.quantize.qlinear import FORMAT

    source, out_dir = Path(source), Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists; choose a new folder (a finished model is never overwritten)")
    if ids.dim() != 2:
        raise ConfigError(f"calibration ids must be (N, L), got shape {tuple(ids.shape)}", field="ids")
    model = skeleton(source, attn_implementation)
    weights = FolderWeights(source, getattr(model, "base_model_prefix", ""))
    prefix, blocks = decoder_blocks(model)
    emb = model.get_input_embeddings()
    if not isinstance(emb, nn.Embedding):
        raise UnsupportedModelError(
            f"{type(model).__name__}'s input embedding is a {type(emb).__name__}; "
            "streamed calibration reads the rows of an nn.Embedding"
        )
    skip_mods = _module_names(model, emb, model.get_output_embeddings())
    tied = tied_names(model)
    state_names = list(model.state_dict().keys())
    in_blocks = [n for n in state_names if n.startswith(prefix + ".")]
    outside_names = [n for n in state_names if n not in in_blocks and n not in tied]
    outside_fns = outside(model) if callable(outside) else dict(outside or {})

    # 1. what runs before block 0, without the embedding table: the calibration tokens' rows only
    small = {
        n: weights.get(n)
        for n in outside_names
        if n.rpartition(".")[0] not in skip_mods and n.rpartition(".")[0] not in outside_fns
    }
    model.load_state_dict(small, strict=False, assign=True)
    del small
    emb_name = next(n for n, m in model.named_modules() if m is emb) + ".weight"
    uniq = torch.unique(ids)
    rows = read_rows(weights.entry(emb_name), uniq)
    rows = rows.float() if rows.is_floating_point() else rows
    block_fn = process(model)
    # the lambda runs inside capture_inputs, before `del rows` below
    data = capture_inputs(model, blocks, ids, batch_size, embed=lambda b: rows[torch.searchsorted(uniq, b)])  # noqa: F821
    del rows

    work = (
        Path(checkpoint_dir)
        if checkpoint_dir is not None
        else Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent if out_dir.parent.is_dir() else None))
    )
    work.mkdir(parents=True, exist_ok=True)
    fp = _fingerprint(ids, tag, source)
    start = 0
    if (work / "progress.json").is_file():
        state = json.loads((work / "progress.json").read_text())
        if state.get("fingerprint") != fp:
            raise FormatError(
                f"{work} holds a calibration of other tokens, model or config; use a new checkpoint folder"
            )
        start = state["done"] + 1
    # hidden_<i>: the inputs of block i, one file per batch; only the batch in use is in memory
    data.hidden = (
        DiskHidden(work / f"hidden_{start}", len(data.hidden))
        if start
        else DiskHidden.store(work / "hidden_0", data.hidden)
    )
    data.memo_store = lambda name: DiskList(work / f"memo_{name}")  # reused outputs: on disk too
    try:
        # 2. block by block
        for i in track(range(start, len(blocks)), description, total=len(blocks) - start):
            head = f"{prefix}.{i}."
            block = blocks[i]
            block.load_state_dict({k: weights.get(head + k) for k in block.state_dict()}, assign=True)
            block_fn(i, block, data)
            data.hidden.begin(work / f"hidden_{i + 1}")
            data.advance(block)
            data.forget()
            used = data.hidden.end()
            tensors, layers = save_block(block)
            _atomic_save({head + k: v for k, v in tensors.items()}, work / f"block_{i}.safetensors")
            atomic_write_json(work / f"block_{i}.json", {head + k: v for k, v in layers.items()})
            del tensors
            for m in block.modules():  # QuantLinear's cached float weight is not a buffer: .to("meta") misses it
                if hasattr(m, "release_cache"):
                    m.release_cache()
            blocks[i] = block.to("meta")  # frees the block's storage (codes, norms, float leftovers)
            _trim()
            # progress names a complete hidden_<i+1> before the inputs of block i are deleted
            atomic_write_json(work / "progress.json", {"done": i, "blocks": len(blocks), "fingerprint": fp})
            shutil.rmtree(used, ignore_errors=True)
        del data

        # 3. the output folder: block shards + untouched tensors, copied chunk by chunk
        outs: list[Out] = []
        layers_all: dict = {}
        for i in range(len(blocks)):
            entries, _ = read_header(work / f"block_{i}.safetensors")
            outs += [copy_out(n, e) for n, e in entries.items()]
            layers_all.update(json.loads((work / f"block_{i}.json").read_text()))
        handled: set[str] = set()
        for lin, fn in outside_fns.items():
            bias_name = f"{lin}.bias"
            bias = weights.get(bias_name) if bias_name in state_names else None
            weight_name = tied.get(f"{lin}.weight", f"{lin}.weight")  # a tied lm_head reads the embedding
            tensors, info = fn(lin, weights.get(weight_name), bias)
            outs += [tensor_out(n, t) for n, t in tensors.items()]
            layers_all[lin] = info
            handled |= {f"{lin}.weight", bias_name}
        for n in outside_names:
            if n in handled:
                continue
            e = weights.entry(n)
            float_src = e.dtype in ("F16", "BF16", "F64")
            outs.append(copy_out(n, e, torch.float32 if float_src else None))
        ties = {n: src for n, src in tied.items() if n.rpartition(".")[0] not in outside_fns}
        if ties:
            layers_all["_tied"] = ties
        with atomic_dir(out_dir) as tmp:
            model.config.save_pretrained(tmp)
            write_file(tmp / "model.safetensors", outs, metadata or {"format": FORMAT})
            content = quant_json(layers_all) if quant_json else {"format": FORMAT, "layers": layers_all}
            (tmp / "slimtorch_quant.json").write_text(json.dumps(content))
            for f in source.iterdir():  # tokenizer, generation config, chat template
                if f.is_file() and not f.name.endswith(_WEIGHT_SUFFIXES) and f.name not in _WEIGHT_NAMES:
                    shutil.copy2(f, tmp / f.name)
    finally:
        if checkpoint_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    if checkpoint_dir is not None:  # the finished folder is the resumable state now
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


class DiskHidden:
    """Calibration hidden states on disk, one file per batch, as a list for :class:`BlockData`.

    Reading batch ``k`` reads its file into a fresh tensor; between :meth:`begin` and
    :meth:`end`, assignments write the next block's inputs to another folder (so a
    pass can replace each batch by the block's output while the others are still
    inputs). Memory then holds one batch, not ``N x L x width`` floats.
    """

    def __init__(self, folder: Path, count: int):
        if not (folder / f"{count - 1}.safetensors").is_file():
            raise FormatError(f"{folder} lacks calibration hidden states; use a new checkpoint folder")
        self.folder, self.count, self._next = folder, count, None

    @classmethod
    def store(cls, folder: Path, tensors: list[torch.Tensor]) -> DiskHidden:
        folder.mkdir(parents=True, exist_ok=True)
        for k, t in enumerate(tensors):
            write_file(folder / f"{k}.safetensors", [tensor_out("h", t)])
        return cls(folder, len(tensors))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, k: int) -> torch.Tensor:
        if not 0 <= k < self.count:
            raise IndexError(k)
        return read_tensor(read_header(self.folder / f"{k}.safetensors")[0]["h"])

    def __iter__(self):
        return (self[k] for k in range(self.count))

    def __setitem__(self, k: int, t: torch.Tensor) -> None:
        if self._next is None:
            raise RuntimeError("DiskHidden: call begin(folder) before replacing batches")
        write_file(self._next / f"{k}.safetensors", [tensor_out("h", t)])

    def begin(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)  # a pass a kill interrupted
        folder.mkdir(parents=True)
        self._next = folder

    def end(self) -> Path:
        """Read from the folder just written; returns the previous one (for the caller to delete)."""
        used, self.folder, self._next = self.folder, self._next, None
        return used


class DiskList:
    """Outputs of a frozen block child per batch (:meth:`BlockData.settle`), one file each, read back on use."""

    def __init__(self, folder: Path):
        shutil.rmtree(folder, ignore_errors=True)  # an earlier block's or an abandoned recording
        folder.mkdir(parents=True)
        self.folder, self.layout = folder, []  # per batch: None (a tensor) or which tuple items were None

    def __len__(self) -> int:
        return len(self.layout)

    def append(self, out) -> None:
        items = [out] if isinstance(out, torch.Tensor) else [o for o in out if o is not None]
        write_file(
            self.folder / f"{len(self.layout)}.safetensors",
            [tensor_out(str(j), t.detach()) for j, t in enumerate(items)],
        )
        self.layout.append(None if isinstance(out, torch.Tensor) else [o is None for o in out])

    def __getitem__(self, k: int):
        entries = read_header(self.folder / f"{k}.safetensors")[0]
        tensors = [read_tensor(entries[str(j)]) for j in range(len(entries))]
        if self.layout[k] is None:
            return tensors[0]
        it = iter(tensors)
        return tuple(None if none else next(it) for none in self.layout[k])


def _trim() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; elsewhere nothing).

    Between blocks every activation of the finished block has been freed, but glibc
    keeps freed chunks below its (adaptive) mmap threshold in the heap, and the
    next block's differently sized tensors fragment it: resident memory grew by
    about 100 MB per block on SmolLM2 without this. Trimming changes no setting.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _atomic_save(tensors: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)
