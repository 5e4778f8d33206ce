"""Model files (safetensors + JSON architecture) and folding of weight transforms."""

from slimtorch.io.fold import effective_state_dict, fold
from slimtorch.io.model_file import build_from_state, load_model, model_to_bytes, read_model_file, save_model
from slimtorch.io.resize import resize_to_shapes

__all__ = [
    "build_from_state",
    "effective_state_dict",
    "fold",
    "load_model",
    "model_to_bytes",
    "read_model_file",
    "resize_to_shapes",
    "save_model",
]
