"""The training loop: ``fit`` trains, fine-tunes, distills and runs QAT alike.

Determinism: epoch ``e`` shuffles with a generator seeded from ``(seed, e)`` and
reseeds torch's global RNG (dropout) the same way, so the result depends only on
the config and the starting weights. That makes ``resume=True`` after a crash
reproduce an uninterrupted run bit for bit: the checkpoint written after each
epoch needs no RNG state.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from slimtorch.core.progress import track
from slimtorch.train import distributed as D
from slimtorch.train.batches import iterate_batches
from slimtorch.train.callbacks import Callback, TrainState
from slimtorch.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from slimtorch.train.config import TrainConfig
from slimtorch.train.constraints import apply_max_norm
from slimtorch.train.evaluate import evaluate
from slimtorch.train.optim import build_optimizer, build_scheduler

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    epochs_run: int
    resumed_from: int | None

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y, label_smoothing=label_smoothing)

    return loss


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


def random_shift(x: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ±pixels (zero fill), as in Hinton et al. 2015's MNIST runs.

    Vectorised over the (2p+1)² possible shifts rather than over images.
    """
    if x.ndim != 4:
        return x
    n, (h, w) = x.shape[0], x.shape[-2:]
    shifts = torch.randint(0, 2 * pixels + 1, (n, 2), generator=gen)
    padded = nn.functional.pad(x, (pixels, pixels, pixels, pixels))
    out = torch.empty_like(x)
    code = shifts[:, 0] * (2 * pixels + 1) + shifts[:, 1]
    for c in code.unique().tolist():
        dy, dx = divmod(c, 2 * pixels + 1)
        idx = (code == c).nonzero().squeeze(1)
        out[idx] = padded[idx, :, dy : dy + h, dx : dx + w]
    return out


def _log(msg: str, verbose: bool) -> None:
    if verbose:
        print(msg, file=sys.stderr, flush=True)


def fit(
    model: nn.Module,
    train_data: Dataset,
    config: TrainConfig,
    *,
    eval_data: Dataset | None = None,
    loss_fn: LossFn | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: bool = True,
) -> FitResult:
    """Train ``model`` in place on ``train_data`` according to ``config``.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to logits (or whatever
            ``loss_fn`` consumes).
        train_data: a map-style dataset of ``(input, target)`` pairs.
        config: optimizer, schedule, epochs, batch size, seed.
        eval_data: labelled data evaluated every ``config.eval_every`` epochs.
        loss_fn: ``loss_fn(model, x, y) -> scalar``; default cross-entropy. Distillation
            passes a loss that also runs the teacher.
        callbacks: hooks (gradual pruning, QAT schedules…).
        checkpoint_dir: where ``checkpoint.pt`` is written after every epoch.
        resume: continue from ``checkpoint_dir/checkpoint.pt`` if it exists.
        verbose: print one line per epoch to stderr.

    Returns:
        The per-epoch history (train loss, eval accuracy, lr, seconds).
    """
    if len(train_data) == 0:
        raise ValueError("training data is empty")
    loss_fn = loss_fn or cross_entropy_loss(config.label_smoothing)
    world, rank = D.world_size(), D.rank()
    verbose = verbose and rank == 0
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the number of processes ({world})")
    local_batch = config.batch_size // world
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    # Under DDP the loss is computed through the wrapper (which all-reduces gradients);
    # callbacks, checkpoints and the returned model see the plain module.
    train_model = model
    if world > 1:
        D.broadcast_module(model)
        train_model = torch.nn.parallel.DistributedDataParallel(model)
    steps_per_epoch = -(-len(train_data) // config.batch_size)
    optimizer = build_optimizer(model, config.optimizer)
    scheduler = build_scheduler(optimizer, config.schedule, config.epochs, steps_per_epoch)
    state = TrainState(model, optimizer, steps_per_epoch=steps_per_epoch, epochs=config.epochs)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    start_epoch, resumed_from = 0, None
    if resume and ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        for cb, cb_state in zip(callbacks, ckpt.get("callbacks", []), strict=False):
            cb.load_state_dict(cb_state)
        start_epoch = resumed_from = int(ckpt["epoch"])
        state.history = list(ckpt.get("history", []))
        state.step = start_epoch * steps_per_epoch
        _log(f"resuming from epoch {start_epoch} ({ckpt_path})", verbose)
    for cb in callbacks:
        cb.on_train_begin(state)

    epochs = range(start_epoch, config.epochs)
    # a bar over epochs and one over the epoch's batches on a terminal; the epoch lines below are the plain log
    for epoch in track(epochs, "training: epochs", plain=False) if verbose else epochs:
        state.epoch = epoch
        seed = _epoch_seed(config.seed, epoch)
        torch.manual_seed(seed + rank)  # dropout differs per rank, as with independent workers
        jitter_gen = torch.Generator().manual_seed(seed + 1 + rank)
        indices = list(D.StridedEpochSampler(len(train_data), seed, rank, world))
        loader = iterate_batches(train_data, indices, local_batch)
        if verbose:
            loader = track(loader, f"epoch {epoch + 1}/{config.epochs}", -(-len(indices) // local_batch), plain=False)
        model.train()
        if config.freeze_bn:
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        t0, loss_sum, n = time.perf_counter(), 0.0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            if config.jitter:
                x = random_shift(x, config.jitter, jitter_gen)
            for cb in callbacks:
                cb.on_step_begin(state)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(train_model, x, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {loss.item()} at epoch {epoch + 1}, step {state.step}; "
                    "lower the learning rate (optimizer.lr) or enable grad_clip"
                )
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            if config.max_norm is not None:
                apply_max_norm(model, config.max_norm)
            scheduler.step()
            state.step += 1
            loss_sum += loss.item() * len(y)  # this rank's share; rank 0 reports its own
            n += len(y)
            for cb in callbacks:
                cb.on_step_end(state)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(n, 1),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        last = epoch + 1 == config.epochs
        if eval_data is not None and (last or (config.eval_every and (epoch + 1) % config.eval_every == 0)):
            record["eval_accuracy"] = evaluate(model, eval_data, config.eval_batch_size).accuracy
        state.history.append(record)
        for cb in callbacks:
            cb.on_epoch_end(state)
        acc = f" eval_acc {record['eval_accuracy']:.4f}" if "eval_accuracy" in record else ""
        _log(
            f"epoch {epoch + 1}/{config.epochs} loss {record['train_loss']:.4f}{acc} "
            f"lr {record['lr']:.4g} ({record['seconds']:.1f}s)",
            verbose,
        )
        if ckpt_path is not None and rank == 0:
            save_checkpoint(
                ckpt_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "history": state.history,
                    "callbacks": [cb.state_dict() for cb in callbacks],
                },
            )
    D.barrier()
    model.eval()
    return FitResult(history=state.history, epochs_run=config.epochs - start_epoch, resumed_from=resumed_from)
