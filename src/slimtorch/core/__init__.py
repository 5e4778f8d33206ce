"""Shared building blocks: errors, frozen configs, registries, atomic file writes, seeding."""

from slimtorch.core.config import FrozenConfig, validate_config
from slimtorch.core.errors import (
    ConfigError,
    DataNotFoundError,
    FormatError,
    SlimtorchError,
    UnsupportedModelError,
)
from slimtorch.core.fileio import atomic_write_bytes, atomic_write_text, prepare_output_dir
from slimtorch.core.registry import Registry
from slimtorch.core.seed import seed_everything, set_threads

__all__ = [
    "ConfigError",
    "DataNotFoundError",
    "FormatError",
    "FrozenConfig",
    "Registry",
    "SlimtorchError",
    "UnsupportedModelError",
    "atomic_write_bytes",
    "atomic_write_text",
    "prepare_output_dir",
    "seed_everything",
    "set_threads",
    "validate_config",
]
