"""Worker for the DDP test: fine-tune a pruned LeNet-300-100 on synthetic data, save weights.

Run alone (1 process, batch 2b) or under torchrun (2 processes, batch b each).
"""

import sys

import torch
from safetensors.torch import save_file

from slimtorch.data import get_dataset
from slimtorch.models import create_model
from slimtorch.prune import PruneConfig, prune
from slimtorch.train import OptimizerConfig, TrainConfig, fit
from slimtorch.train import distributed as D

out = sys.argv[1]
torch.set_num_threads(1)
D.init_from_env("cpu")
train, _ = get_dataset("synthetic", n_train=256, n_test=8)
torch.manual_seed(0)
model = prune(create_model("lenet300_100"), PruneConfig(sparsity=0.8))
cfg = TrainConfig(epochs=2, batch_size=64, optimizer=OptimizerConfig(lr=0.05, momentum=0.9, weight_decay=1e-3))
fit(model, train, cfg, verbose=False)
state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
effective = {
    f"effective.{n}": getattr(m, "weight").detach().contiguous()
    for n, m in model.named_modules()
    if isinstance(m, torch.nn.Linear)
}
save_file({**state, **effective}, f"{out}/rank{D.rank()}.safetensors")
