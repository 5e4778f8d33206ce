"""Import every module that registers recipe stages (one line per method).

Kept in one place so ``STAGES`` is complete whenever a recipe is validated.
"""

import importlib

_STAGE_MODULES = [
    "slimtorch.pipeline.builtin_stages",
    "slimtorch.prune.stage",
    "slimtorch.quantize.stage",
    "slimtorch.distill.stage",
    "slimtorch.encode.stage",
    "slimtorch.prune.structured.stage",
    "slimtorch.deploy.stage",
    "slimtorch.quantize.lm_stage",
    "slimtorch.prune.lm_stage",
    "slimtorch.encode.lm_stage",
    "slimtorch.deploy.lm.stage",
]

for _mod in _STAGE_MODULES:
    importlib.import_module(_mod)
