"""slimtorch: make trained PyTorch models smaller and faster, and prove it with measurements.

The public API is one verb per technique, each ``fn(model, config, ...) -> model``:
``slimtorch.prune.prune``, ``slimtorch.quantize.quantize_model`` / ``kmeans_share``,
``slimtorch.distill.distill``, ``slimtorch.encode.pack_model``; models come from
``slimtorch.models.create_model`` or are your own ``nn.Module``; ``slimtorch.measure.measure``
measures any of them; ``slimtorch.load`` / ``slimtorch.save`` read and write model files.
"""

__version__ = "0.1.0"

from slimtorch.api import load, save  # noqa: E402

__all__ = ["__version__", "load", "save"]
