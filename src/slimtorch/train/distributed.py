"""torch.distributed support: DDP training under torchrun (gloo on CPU, NCCL on GPU).

slimtorch does not manage processes itself: ``torchrun`` (or ``slimtorch run
--nproc N``, which calls it) starts them and sets the usual environment
variables; :func:`init_from_env` joins the process group. Data order is
decided by one seeded permutation per epoch that every rank computes alike and
splits by stride (as ``DistributedSampler`` does), so 2 processes with batch b
see exactly the batches 1 process with batch 2b sees, and gradient averaging
makes the two runs agree up to float summation order.

Independent work (sweep points, sensitivity points) fans out instead: each rank
takes its share (:func:`shard`) and runs it under :func:`local_only`, where the
process looks like a single one, so nothing inside joins DDP or rank-0-only
logic; :func:`all_gather_objects` then brings the results together.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

T = TypeVar("T")
R = TypeVar("R")

# Depth of nested local_only() blocks; while positive this process acts as a world of one.
_local_depth = 0


def _group_active() -> bool:
    """Whether a process group of more than one process exists, whatever local_only says."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_distributed() -> bool:
    return _local_depth == 0 and _group_active()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def global_rank() -> int:
    """This process's rank in the process group, even inside :func:`local_only` (for logs and scratch names)."""
    return dist.get_rank() if _group_active() else 0


@contextmanager
def local_only() -> Iterator[None]:
    """Inside, this process behaves as a single one (world 1, rank 0, main); the group stays initialised.

    Used to run one independent piece of work (a sweep point) on one rank: training
    inside does not wrap DDP, the runner writes its folder and measures, and nested
    fan-outs (a sensitivity sweep inside a sweep point) run serially instead of
    waiting for ranks that are busy with other points.
    """
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def is_main() -> bool:
    """Only the main process writes files, prints progress and measures."""
    return rank() == 0


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group described by torchrun's environment; returns whether distributed.

    Uses gloo for CPU and NCCL for CUDA. Asking for ``cuda`` without a GPU is a clear error.
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        from slimtorch.core.errors import ConfigError

        raise ConfigError(
            "device 'cuda' requested but no CUDA GPU is available here; set device: cpu "
            "(or install a CUDA build of torch on a machine with a GPU)",
            field="device",
        )
    if _local_depth:
        return False  # a fanned-out point runs alone even though torchrun's variables are set
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return is_distributed()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    # Leaving the group to interpreter teardown can abort the process: gloo's worker threads
    # may still hold tensors of finished collectives, and freeing them then needs the GIL.
    atexit.register(_destroy)
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shutdown() -> None:
    """Wait for every rank, then leave the process group (call once, at the end of a distributed script)."""
    if _group_active():
        dist.barrier()
    _destroy()


def shard(n: int) -> list[int]:
    """This rank's indices among ``range(n)``: round robin (``k % world == rank``), so neighbouring
    points, which often cost alike (one layer at rising sparsities), spread over the ranks."""
    return list(range(rank(), n, world_size()))


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` when not distributed).

    Objects travel between processes through torch's own serialisation; nothing is written to disk.
    """
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def fan_out(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]``, with the items shared among ranks; every rank gets the whole list.

    Each rank evaluates its :func:`shard` inside :func:`local_only`. A failure on one rank is
    gathered and raised on every rank, so no rank is left waiting in a collective for a
    rank that has died.
    """
    if not is_distributed():
        return [fn(x) for x in items]
    mine: dict[int, R] = {}
    failure, error = None, None
    mine_idx = shard(len(items))  # taken before local_only(), inside which every rank looks like rank 0
    with local_only():
        for k in mine_idx:
            try:
                mine[k] = fn(items[k])
            except Exception as exc:  # noqa: BLE001  (every rank must reach the gather below)
                failure, error = exc, f"rank {global_rank()}, item {k} ({items[k]!r}): {type(exc).__name__}: {exc}"
                break
    gathered = all_gather_objects((mine, error))
    if failure is not None:
        raise failure  # the failing rank raises what a serial run would have raised
    errors = [e for _, e in gathered if e is not None]
    if errors:
        raise RuntimeError("fanned-out work failed on " + "; ".join(errors))
    merged = {k: v for part, _ in gathered for k, v in part.items()}
    return [merged[k] for k in range(len(items))]


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Make every rank's parameters and buffers (masks, codebooks, observer ranges) equal to rank ``src``'s."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


class StridedEpochSampler(Sampler[int]):
    """Indices of one epoch: a permutation seeded by ``seed``, this rank's stride of it.

    The permutation is padded (wrapping around) to a multiple of the world size so
    every rank gets the same number of examples, as ``DistributedSampler`` does.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world

    def _perm(self) -> torch.Tensor:
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed))
        pad = (-self.n) % self.world
        return torch.cat([perm, perm[:pad]]) if pad else perm

    def __iter__(self) -> Iterator[int]:
        return iter(self._perm()[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return -(-self.n // self.world)
