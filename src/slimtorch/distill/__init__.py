"""Knowledge distillation (Hinton et al., 2015), feature hints, lightweight students.

``distill(student, DistillConfig(...), teacher, train_data)`` trains a student
through :func:`slimtorch.train.fit` with a distillation loss. The recipe stage
lives in :mod:`slimtorch.distill.stage` (imported by the pipeline's stage list).
"""

from slimtorch.distill.compose import dense_copy, finetune_pruned_with_kd, qat_with_teacher
from slimtorch.distill.config import DistillConfig, FeaturePair
from slimtorch.distill.losses import kd_loss
from slimtorch.distill.students import mobilenet_v2_student, separable_lenet5, small_lenet5, small_mlp, thinner
from slimtorch.distill.transform import distill, distill_fit

__all__ = [
    "DistillConfig",
    "FeaturePair",
    "dense_copy",
    "distill",
    "distill_fit",
    "finetune_pruned_with_kd",
    "kd_loss",
    "mobilenet_v2_student",
    "qat_with_teacher",
    "separable_lenet5",
    "small_lenet5",
    "small_mlp",
    "thinner",
]
