"""Worker for the distributed sensitivity test: run alone or under torchrun, write this rank's results.

Each rank writes ``rank<R>.json`` with the fanned-out pruning and bit-width
sensitivities, the same computed here with ``distributed=False`` (the serial
path, same process and threads, so equal means exactly equal), and what the
rank saw of ``local_only``, ``shard``, ``all_gather_objects`` and a failing
fan-out.
"""

import json
import sys

import torch

from slimtorch.prune import sensitivity
from slimtorch.quantize import QuantConfig
from slimtorch.quantize.mixed import sensitivity as bits_sensitivity
from slimtorch.train import TrainConfig, fit
from slimtorch.train import distributed as D
from tests.prune.prune_helpers import make, vector_data

out = sys.argv[1]
torch.set_num_threads(1)
D.init_from_env("cpu")
with D.local_only():
    # every rank trains the same model alone (no DDP inside local_only)
    seen_inside = [D.world_size(), D.rank(), D.is_main(), D.init_from_env("cpu"), D.global_rank()]
    model = make()
    data = vector_data(256)  # accuracy on the training data: enough to give curves that fall
    fit(model, data, TrainConfig(epochs=3, batch_size=32), verbose=False)
sparsities = [0.0, 0.3, 0.6, 0.9, 0.99]


def fails_on_one(k: int) -> int:
    if k == 1:
        raise ValueError("point one is broken")
    return k


try:
    D.fan_out(fails_on_one, [0, 1, 2])
    failure = None
except Exception as exc:  # noqa: BLE001
    failure = f"{type(exc).__name__}: {exc}"

bits_cfg = QuantConfig(act_bits=None)
result = {
    "world": D.world_size(),
    "seen_inside": seen_inside,
    "shard": D.shard(5),
    "gathered": D.all_gather_objects(D.rank()),
    "failure": failure,
    "prune": sensitivity(model, data, sparsities),
    "prune_serial": sensitivity(model, data, sparsities, distributed=False),
    "bits": bits_sensitivity(model, bits_cfg, data, (8, 4, 2)),
    "bits_serial": bits_sensitivity(model, bits_cfg, data, (8, 4, 2), distributed=False),
}
with open(f"{out}/rank{D.global_rank()}.json", "w") as f:
    json.dump(result, f)
D.shutdown()
