"""Knowledge distillation (Hinton et al., 2015), feature hints, lightweight students.

``distill(student, DistillConfig(...), teacher, train_data)`` trains a student
through :func:`slimtorch.train.fit` with a distillation loss. The recipe stage
lives in :mod:`slimtorch.distill.stage` (imported by the pipeline's stage list).
"""

from slimtorch.distill.cache import IndexedDataset, build_teacher_cache, with_indices
from slimtorch.distill.compose import dense_copy, finetune_pruned_with_kd, is_compressed, qat_with_teacher
from slimtorch.distill.config import DistillConfig, FeaturePair
from slimtorch.distill.features import FeatureCapture, make_adapter
from slimtorch.distill.losses import hint_loss, kd_loss, logit_mse_loss, soft_target_loss
from slimtorch.distill.students import (
    mobilenet_v2_student,
    separable_lenet5,
    small_lenet5,
    small_mlp,
    thinner,
    thinner_spec,
)
from slimtorch.distill.transform import (
    DistillModule,
    build_adapters,
    distill,
    distill_fit,
    frozen_teacher,
    make_distill_loss,
)

__all__ = [
    "DistillConfig",
    "DistillModule",
    "FeatureCapture",
    "FeaturePair",
    "IndexedDataset",
    "build_adapters",
    "build_teacher_cache",
    "dense_copy",
    "distill",
    "distill_fit",
    "finetune_pruned_with_kd",
    "frozen_teacher",
    "hint_loss",
    "is_compressed",
    "kd_loss",
    "logit_mse_loss",
    "make_adapter",
    "make_distill_loss",
    "mobilenet_v2_student",
    "qat_with_teacher",
    "separable_lenet5",
    "small_lenet5",
    "small_mlp",
    "soft_target_loss",
    "thinner",
    "thinner_spec",
    "with_indices",
]
