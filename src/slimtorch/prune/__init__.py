"""Unstructured and N:M pruning with masks that survive fine-tuning, and one-shot pruning of language models.

Han et al. 2015 ("Learning both weights and connections"), Zhu & Gupta 2017
("To prune or not to prune"); see docs/pruning.md. Language models: magnitude,
Wanda (Sun et al. 2024) and SparseGPT (Frantar & Alistarh 2023), block by block.
"""

from slimtorch.prune.config import PruneConfig
from slimtorch.prune.criteria import CRITERIA, Criterion, register_criterion
from slimtorch.prune.magnitude_lm import MagnitudeLMConfig, prune_magnitude_lm
from slimtorch.prune.mask import Mask, finalize, remove_masks
from slimtorch.prune.prune import attach_masks, prune
from slimtorch.prune.report import sparsity_report, total_sparsity
from slimtorch.prune.schedule import AGPCallback, AGPConfig, agp_sparsity, prune_iterative, retrain_config
from slimtorch.prune.scheduled import PruneScheduleConfig, prune_scheduled
from slimtorch.prune.sensitivity import plot_sensitivity, save_sensitivity, sensitivity, sparsities_for_tolerance
from slimtorch.prune.sparsegpt import SparseGPTConfig, prune_sparsegpt, sparsegpt_weight
from slimtorch.prune.wanda import WandaConfig, prune_wanda

__all__ = [
    "AGPCallback",
    "AGPConfig",
    "CRITERIA",
    "Criterion",
    "MagnitudeLMConfig",
    "Mask",
    "PruneConfig",
    "PruneScheduleConfig",
    "SparseGPTConfig",
    "WandaConfig",
    "agp_sparsity",
    "attach_masks",
    "finalize",
    "plot_sensitivity",
    "prune",
    "prune_iterative",
    "prune_magnitude_lm",
    "prune_scheduled",
    "prune_sparsegpt",
    "prune_wanda",
    "register_criterion",
    "remove_masks",
    "retrain_config",
    "save_sensitivity",
    "sensitivity",
    "sparsegpt_weight",
    "sparsities_for_tolerance",
    "sparsity_report",
    "total_sparsity",
]
