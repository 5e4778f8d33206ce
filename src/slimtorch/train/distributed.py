"""torch.distributed support: DDP training under torchrun (gloo on CPU, NCCL on GPU).

slimtorch does not manage processes itself: ``torchrun`` (or ``slimtorch run
--nproc N``, which calls it) starts them and sets the usual environment
variables; :func:`init_from_env` joins the process group. Data order is
decided by one seeded permutation per epoch that every rank computes alike and
splits by stride (as ``DistributedSampler`` does), so 2 processes with batch b
see exactly the batches 1 process with batch 2b sees, and gradient averaging
makes the two runs agree up to float summation order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Only the main process writes files, prints progress and measures."""
    return rank() == 0


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group described by torchrun's environment; returns whether distributed.

    Uses gloo for CPU and NCCL for CUDA. Asking for ``cuda`` without a GPU is a clear error.
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA GPU is available; use device: cpu")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return is_distributed()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


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
