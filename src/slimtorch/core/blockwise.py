"""Block-by-block calibration of a decoder: the one mechanism GPTQ, AWQ, Wanda and SparseGPT share.

The calibration tokens go through the embedding once; the hidden states that
enter the first block are captured (with the keyword arguments the model passes
its blocks: rotary embeddings, masks, positions). Then, one block at a time:

1. the method runs the block on the captured inputs as often as it needs (with
   hooks that gather, e.g., each Linear's input Gram matrix) and changes it;
2. the changed block is run once more and its outputs become the next block's
   inputs, so later blocks are calibrated on what the *compressed* earlier
   blocks produce (GPTQ's sequential protocol);
3. with ``checkpoint_dir``, the block's new state and the propagated hidden
   states are written atomically, so a killed calibration resumes after the
   last finished block.

Peak memory is the model plus two copies of the calibration hidden states
(``N x L x width`` floats), not the model times the calibration set; the lm head
never runs. Hugging Face decoders (Llama, Mistral, Qwen, GPT-2, OPT) work through
:func:`slimtorch.models.llm.decoder_blocks`; any model with its blocks in one
``nn.ModuleList`` does.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from slimtorch.core.errors import ConfigError, FormatError
from slimtorch.core.fileio import atomic_write_json
from slimtorch.core.progress import track


class _Stop(Exception):
    pass


@dataclass
class BlockData:
    """Hidden states entering a block, in calibration batches, and the keyword arguments per batch.

    ``memo_store(name)`` makes the per-batch list that :meth:`settle` records a child's
    outputs in (default: a Python list; layer-streamed calibration keeps them on disk).
    """

    hidden: list[torch.Tensor]
    kwargs: list[dict]
    memo_store: Callable[[str], list] | None = None
    _memo: _Memo | None = field(default=None, repr=False)

    def run(self, block: nn.Module) -> list[torch.Tensor]:
        """The block's outputs for every batch (no grad)."""
        outs = []
        with torch.no_grad():
            for k, (h, kw) in enumerate(zip(self.hidden, self.kwargs)):
                with self._replaying(block, k):
                    out = block(h, **kw)
                outs.append(out[0] if isinstance(out, (tuple, list)) else out)
        return outs

    def advance(self, block: nn.Module) -> None:
        """Replace every batch by the block's output for it, one batch at a time.

        The same values as ``self.hidden = self.run(block)``, holding one batch more
        than the hidden states instead of a second copy of them.
        """
        with torch.no_grad():
            for k, kw in enumerate(self.kwargs):
                with self._replaying(block, k):
                    out = block(self.hidden[k], **kw)
                self.hidden[k] = out[0] if isinstance(out, (tuple, list)) else out

    def feed(self, block: nn.Module, module: nn.Module, fn: Callable[[torch.Tensor], None]) -> None:
        """Call ``fn`` with ``module``'s input for every batch, stopping the block's forward right there.

        Gathering statistics of an early layer then costs only the part of the block before it.
        """

        def hook(_m, inp):
            fn(inp[0].detach())
            raise _Stop

        handle = module.register_forward_pre_hook(hook)
        try:
            with torch.no_grad():
                for k, (h, kw) in enumerate(zip(self.hidden, self.kwargs)):
                    try:
                        with self._replaying(block, k):
                            block(h, **kw)
                    except _Stop:
                        pass
        finally:
            handle.remove()

    def settle(self, block: nn.Module, pending: Iterable[nn.Module]) -> None:
        """Declare that only the ``pending`` modules of ``block`` will still change: frozen outputs are reused.

        A direct child of the block that holds no pending module, and runs after
        children that hold none either, sees the same input and weights in every
        later pass over the same batches: the next pass records its outputs, and
        the passes after it (:meth:`feed`, :meth:`run`, :meth:`advance` on this
        block) return them instead of running it. In a pre-norm decoder, once q/k/v
        and o are final, the attention runs once more instead of three more times;
        the results are the same values (same inputs, same operations). Only
        children holding an ``nn.Linear`` or ``QuantLinear`` (the costly ones) and
        returning tensors (or tuples of tensors and ``None``) are reused; the memo
        is dropped by :meth:`forget` or when another block runs.
        """
        memo = self._memo if self._memo is not None and self._memo.block is block else _Memo(block, self)
        self._memo = memo
        memo.settle({id(m) for m in pending})

    def forget(self) -> None:
        """Drop the recorded outputs of :meth:`settle` (the block changed or is done)."""
        self._memo = None

    @contextmanager
    def _replaying(self, block: nn.Module, k: int):
        memo = self._memo
        if memo is None or memo.block is not block:
            yield
            return
        with memo.batch(k):
            yield


class _Memo:
    """Per-batch outputs of a block's frozen children (see :meth:`BlockData.settle`)."""

    def __init__(self, block: nn.Module, data: BlockData):
        self.block = block
        self.batches = len(data.hidden)
        self.store = data.memo_store or (lambda _name: MemoList())
        # direct children's names in call order (None: a child runs twice), and the children whose output is
        # their last Linear's output object, with that Linear's name and the output's layout
        self.order, self.tails = _child_order(block, data)
        self.recording: dict[str, list] = {}
        self.recorded: dict[str, list] = {}
        self.refused: set[str] = set()
        # "tail" reuse: a child whose only changing module is its last Linear, which makes its output, is
        # replayed as that Linear applied to its recorded input (the attention while o_proj is being compressed)
        self.tail_recording: dict[str, list] = {}
        self.tail_recorded: dict[str, list] = {}

    def settle(self, pending: set[int]) -> None:
        if self.order is None:
            return
        for name in self.order:
            child = self.block.get_submodule(name)
            changing = [m for m in child.modules() if id(m) in pending]
            if changing:
                tail = self.tails.get(name)
                if (
                    tail is not None
                    and all(m is self.block.get_submodule(tail[0]) for m in changing)
                    and name not in self.tail_recorded
                    and name not in self.tail_recording
                ):
                    self.tail_recording[name] = self.store(name + ".tail_input")
                break  # this child still changes, so every later one may see another input
            if name in self.recorded or name in self.recording or name in self.refused or not _costly(child):
                continue
            self.recording[name] = self.store(name)

    @contextmanager
    def batch(self, k: int):
        patched, handles, ran = [], [], set()
        for name, outs in self.recorded.items():
            child = self.block.get_submodule(name)
            child.forward = lambda *_a, _o=outs, **_kw: _o[k]  # the instance attribute shadows the method
            patched.append(child)
        for name, ins in self.tail_recorded.items():
            if name in self.recorded:
                continue
            child, (tail, layout) = self.block.get_submodule(name), self.tails[name]
            linear = self.block.get_submodule(tail)  # as it is now (it may have been replaced since)
            child.forward = lambda *_a, _l=linear, _x=ins, _n=layout, **_kw: _tail_output(_l(_x[k]), _n)
            patched.append(child)
        for name, outs in self.recording.items():

            def hook(_m, _i, out, name=name, outs=outs):
                ran.add(name)
                if _memoizable(out):
                    outs.append(out)
                else:
                    self.refused.add(name)

            handles.append(self.block.get_submodule(name).register_forward_hook(hook))
        for name, ins in self.tail_recording.items():

            def pre(_m, inp, name=name, ins=ins):
                ran.add(name + ".tail")
                ins.append(inp[0])

            # prepended: a feed pass that stops at this Linear raises in its own pre-hook
            handles.append(self.block.get_submodule(self.tails[name][0]).register_forward_pre_hook(pre, prepend=True))
        try:
            yield
        finally:  # also when a feed pass stops the forward (after the children before its module ran)
            for child in patched:
                del child.forward
            for h in handles:
                h.remove()
            for name in list(self.recording):
                if name in self.refused:
                    del self.recording[name]
                elif name not in ran or len(self.recording[name]) != k + 1:
                    self.recording[name] = self.store(name)  # not run in every batch: record in a later pass
                elif k + 1 == self.batches:
                    self.recorded[name] = self.recording.pop(name)
            for name in list(self.tail_recording):
                if name + ".tail" not in ran or len(self.tail_recording[name]) != k + 1:
                    self.tail_recording[name] = self.store(name + ".tail_input")
                elif k + 1 == self.batches:
                    self.tail_recorded[name] = self.tail_recording.pop(name)


def _tail_output(out: torch.Tensor, layout: int | None):
    return out if layout is None else (out,) + (None,) * layout


class MemoList(list):
    """A frozen child's outputs per batch in memory; copies in and out, so no in-place use can change them."""

    def append(self, out) -> None:
        super().append(_clone(out))

    def __getitem__(self, k):
        return _clone(super().__getitem__(k))


def _clone(out):
    if isinstance(out, torch.Tensor):
        return out.detach().clone()
    return tuple(None if o is None else o.detach().clone() for o in out)


def _memoizable(out) -> bool:
    return isinstance(out, torch.Tensor) or (
        isinstance(out, tuple) and all(o is None or isinstance(o, torch.Tensor) for o in out)
    )


def _costly(child: nn.Module) -> bool:
    return any(isinstance(m, nn.Linear) or type(m).__name__ == "QuantLinear" for m in child.modules())


def _child_order(block: nn.Module, data: BlockData) -> tuple[list[str] | None, dict[str, tuple[str, int | None]]]:
    """Call order of ``block``'s direct children on one sequence (``None`` if one is called twice), and their tails.

    A child's *tail* is its last-called ``nn.Linear`` when the child returns that Linear's
    output object itself (alone, or first in a tuple whose other items are ``None``): then
    the child's output is exactly that Linear applied to its input. The layout is ``None``
    for a bare tensor, else the number of ``None`` items after it.
    """
    calls: list[str] = []
    outputs: dict[str, object] = {}
    last: dict[str, tuple[str, torch.Tensor]] = {}
    handles = []
    for n, m in block.named_children():
        handles.append(m.register_forward_pre_hook(lambda _m, _i, n=n: calls.append(n)))
        handles.append(m.register_forward_hook(lambda _m, _i, out, n=n: outputs.setdefault(n, out)))
        for sub, lin in m.named_modules():
            if isinstance(lin, nn.Linear):
                handles.append(
                    lin.register_forward_hook(
                        lambda _m, _i, out, n=n, sub=f"{n}.{sub}": last.__setitem__(n, (sub, out))
                    )
                )
    probe(block, data, handles)
    tails = {}
    for n, (sub, lin_out) in last.items():
        out = outputs.get(n)
        if out is lin_out:
            tails[n] = (sub, None)
        elif isinstance(out, tuple) and out and out[0] is lin_out and all(o is None for o in out[1:]):
            tails[n] = (sub, len(out) - 1)
    return (calls if len(calls) == len(set(calls)) else None), tails


def probe(block: nn.Module, data: BlockData, handles: list) -> None:
    """One example through ``block`` (no grad) so its hooks see the call order; the hooks are removed after."""
    try:
        with torch.no_grad():
            block(data.hidden[0][:1], **slice_kwargs(data.kwargs[0], 1))
    finally:
        for h in handles:
            h.remove()


def slice_kwargs(kw: dict, n: int) -> dict:
    """Block keyword arguments cut to the first ``n`` sequences (masks and rotary tensors carry a batch dim)."""
    out = {}
    for k, v in kw.items():
        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] > n:
            out[k] = v[:n]
        elif isinstance(v, tuple) and all(isinstance(t, torch.Tensor) for t in v):
            out[k] = tuple(t[:n] if t.dim() > 0 and t.shape[0] > n else t for t in v)
        else:
            out[k] = v
    return out


def capture_inputs(
    model: nn.Module,
    blocks: nn.ModuleList,
    ids: torch.Tensor,
    batch_size: int,
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> BlockData:
    """Run the model up to its first block on ``ids (N, L)``; keep the first block's inputs.

    ``embed`` maps a batch of ids to their embeddings, passed as ``inputs_embeds``
    (layer-streamed calibration, where the embedding table is not loaded).
    """
    hidden, kwargs = [], []

    def grab(_mod, args, kw):
        hidden.append(args[0].detach() if args else kw.pop("hidden_states").detach())
        kwargs.append({k: v for k, v in kw.items() if k != "hidden_states"})
        raise _Stop

    handle = blocks[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            for s in range(0, ids.shape[0], batch_size):
                try:
                    if embed is None:
                        model(ids[s : s + batch_size], use_cache=False)
                    else:
                        model(inputs_embeds=embed(ids[s : s + batch_size]), use_cache=False)
                except _Stop:
                    pass
    finally:
        handle.remove()
    for kw in kwargs:
        for k in ("past_key_value", "past_key_values", "cache"):
            kw.pop(k, None)
        kw["use_cache"] = False
    return BlockData(hidden, kwargs)


@contextmanager
def input_hooks(modules: dict[str, nn.Module], fn: Callable[[str, torch.Tensor], None]):
    """Call ``fn(name, input)`` with each module's (first) input on every forward inside the block."""
    handles = [m.register_forward_hook(lambda _m, inp, _out, n=n: fn(n, inp[0].detach())) for n, m in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def linears(block: nn.Module, names: Iterable[str] | None = None) -> dict[str, nn.Linear]:
    """The block's ``nn.Linear`` modules by name (all, or the given names)."""
    found = {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}
    if names is None:
        return found
    missing = [n for n in names if n not in found]
    if missing:
        raise ConfigError(f"no Linear named {missing} in the block; it has: {', '.join(found)}", field="layers")
    return {n: found[n] for n in names}


BlockFn = Callable[[int, nn.Module, BlockData], None]


def _fingerprint(ids: torch.Tensor, tag: str) -> str:
    h = hashlib.sha256(ids.numpy().tobytes())
    h.update(tag.encode())
    return h.hexdigest()[:16]


def sequential(
    model: nn.Module,
    ids: torch.Tensor,
    process: BlockFn,
    batch_size: int = 8,
    checkpoint_dir: str | os.PathLike | None = None,
    tag: str = "",
    save_block: Callable[[nn.Module], tuple[dict, dict]] | None = None,
    load_block: Callable[[nn.Module, dict, dict], None] | None = None,
    description: str = "calibrating",
) -> nn.Module:
    """Run ``process(index, block, inputs)`` on each decoder block in order, propagating compressed outputs.

    Args:
        model: a decoder; changed in place.
        ids: calibration token ids ``(N, L)``.
        process: changes one block (quantizes / prunes it) given its inputs.
        checkpoint_dir: where to keep resumable state; a rerun with the same ``ids``
            and ``tag`` continues after the last finished block.
        tag: identifies the method and its config in the checkpoint (a changed config never resumes).
        save_block / load_block: how a finished block's state is written and restored
            (default: its float ``state_dict``).

    Raises:
        FormatError: the checkpoint belongs to other tokens or another config.
    """
    from slimtorch.models.llm import decoder_blocks

    if ids.dim() != 2:
        raise ConfigError(f"calibration ids must be (N, L), got shape {tuple(ids.shape)}", field="ids")
    _, blocks = decoder_blocks(model)
    was_training = model.training
    model.eval()
    data = capture_inputs(model, blocks, ids, batch_size)
    start = 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    fp = _fingerprint(ids, tag)
    if ckpt is not None and (ckpt / "progress.json").is_file():
        state = json.loads((ckpt / "progress.json").read_text())
        if state.get("fingerprint") != fp:
            raise FormatError(
                f"{ckpt} holds a calibration of other tokens or another config; use a new checkpoint folder"
            )
        start = state["done"] + 1
        for i in range(start):
            tensors = load_file(str(ckpt / f"block_{i}.safetensors"))
            meta = json.loads((ckpt / f"block_{i}.json").read_text())
            (load_block or _load_float)(blocks[i], tensors, meta)
        h = load_file(str(ckpt / "hidden.safetensors"))
        data.hidden = [h[str(k)] for k in range(len(data.hidden))]
    for i in track(range(start, len(blocks)), description, total=len(blocks) - start):
        process(i, blocks[i], data)
        data.hidden = data.run(blocks[i])
        data.forget()
        # A finished block is not run again during calibration: drop what its layers cached for speed
        # (QuantLinear's dequantized weight), so peak memory does not grow by a float model.
        for m in blocks[i].modules():
            if hasattr(m, "release_cache"):
                m.release_cache()
        if ckpt is not None:
            ckpt.mkdir(parents=True, exist_ok=True)
            tensors, meta = (save_block or _save_float)(blocks[i])
            _atomic_save(tensors, ckpt / f"block_{i}.safetensors")
            atomic_write_json(ckpt / f"block_{i}.json", meta)
            _atomic_save({str(k): h for k, h in enumerate(data.hidden)}, ckpt / "hidden.safetensors")
            atomic_write_json(ckpt / "progress.json", {"done": i, "blocks": len(blocks), "fingerprint": fp})
    model.train(was_training)
    return model


def _atomic_save(tensors: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def _save_float(block: nn.Module) -> tuple[dict, dict]:
    return {k: v.detach().clone() for k, v in block.state_dict().items()}, {}


def _load_float(block: nn.Module, tensors: dict, _meta: dict) -> None:
    block.load_state_dict(tensors)
