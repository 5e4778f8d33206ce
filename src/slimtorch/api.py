"""Top-level conveniences: ``slimtorch.load`` and ``slimtorch.save`` for any slimtorch file."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn


def load(path: str | os.PathLike, model: nn.Module | str | None = None) -> nn.Module:
    """Load a slimtorch model file (``.safetensors``) or compressed file (``.slim``) as a runnable model.

    The format is recognised from the file's content, not its name.

    Args:
        model: ``None`` (rebuild from the file's zoo / Hugging Face spec), a module to load
            into, or a class reference ``"pkg.module:Name"`` / ``"file.py:Name"`` for a
            model of your own class: slimtorch imports it (running that code) and builds it
            with the kwargs the file records. A file alone never makes slimtorch import code.
    """
    from slimtorch.encode.model import is_slim, load_packed
    from slimtorch.io.model_file import build_from_state, read_model_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' does not exist")
    data = path.read_bytes()
    if is_slim(data):
        return load_packed(data, model)
    state, header = read_model_file(data, str(path))
    out = build_from_state(state, header["arch"], model, str(path))
    out.slimtorch_file_metadata = header["metadata"]
    return out


def save(model: nn.Module, path: str | os.PathLike, **kwargs) -> Path:
    """Save ``model``: ``.slim`` suffix → entropy-coded file, otherwise a safetensors model file."""
    path = Path(path)
    if path.suffix == ".slim":
        from slimtorch.encode.model import pack_model

        pack_model(model, path, **kwargs)
        return path
    from slimtorch.io.model_file import save_model

    return save_model(model, path, **kwargs)


def example_input(model: nn.Module, batch: int = 1):
    """A random input of ``model.example_input_shape`` (batch first): token ids for a model whose
    ``input_dtype`` is an integer type (in range of its smallest embedding table), else Gaussian floats.

    Raises:
        ConfigError: the model declares no ``example_input_shape``.
    """
    import torch

    from slimtorch.core.errors import ConfigError

    shape = getattr(model, "example_input_shape", None)
    if shape is None:
        raise ConfigError(
            f"{type(model).__name__} declares no example_input_shape; give data to take inputs from "
            "(e.g. --data mnist) or set model.example_input_shape",
            field="data",
        )
    shape = (batch, *tuple(shape)[1:])
    dtype = getattr(model, "input_dtype", torch.float32)
    if dtype.is_floating_point:
        return torch.randn(*shape, dtype=dtype)
    vocab = min((m.num_embeddings for m in model.modules() if isinstance(m, torch.nn.Embedding)), default=100)
    return torch.randint(1, max(2, min(vocab, 1000)), shape, dtype=dtype)


def load_run(run_dir: str | os.PathLike) -> nn.Module:
    """The final model of a run folder (``model.safetensors``), rebuilt as the run's ``recipe.yaml`` says.

    A model of the user's own class is rebuilt by importing the class that the run's
    recipe named (the user's explicit choice when running it).
    """
    import yaml

    run = Path(run_dir)
    path = run / "model.safetensors"
    if not path.is_file() and (run / "model" / "slimtorch_quant.json").is_file():
        from slimtorch.lm import load_lm_folder

        return load_lm_folder(run)  # a language-model run: its model/ folder (integer codes + scales)
    if not path.is_file():
        raise FileNotFoundError(f"'{run}' is not a finished run folder (no model.safetensors)")
    recipe_path = run / "recipe.yaml"
    source = {}
    if recipe_path.is_file():
        source = (yaml.safe_load(recipe_path.read_text()) or {}).get("model") or {}
    if isinstance(source, dict) and isinstance(source.get("class"), str):
        from slimtorch.models.user import import_class

        import_class(source["class"])  # allow-lists it; the file's spec must name the same class
    return load(path)


def resolve_model(
    ref: str | None,
    *,
    class_ref: str | None = None,
    kwargs: dict | None = None,
    hf: str | None = None,
    task: str | None = None,
) -> nn.Module:
    """The model a command line names.

    Args:
        ref: a zoo name, a model / ``.slim`` file, a run folder, or (with ``class_ref``) a
            weights file (slimtorch, ``.slim``, safetensors or ``torch.load(weights_only=True)``).
        class_ref: your class ``"pkg.module:Name"`` / ``"file.py:Name"`` (imported: runs its code).
        kwargs: its constructor arguments; when omitted for a slimtorch file of that class,
            the file's recorded ones.
        hf: a local Hugging Face checkpoint directory (with ``task``) instead of ``ref``.
    """
    from slimtorch.core.errors import ConfigError

    if kwargs is not None and class_ref is None:
        raise ConfigError("--kwargs are the arguments of --class; give the class too", field="kwargs")
    if task is not None and hf is None:
        raise ConfigError("--task goes with --hf DIR (a Hugging Face checkpoint directory)", field="task")
    if hf is not None:
        if ref is not None or class_ref is not None:
            raise ConfigError("give either --hf DIR or a model / --class, not both", field="hf")
        from slimtorch.models.hf import HFModelSource, build_hf_model

        return build_hf_model(HFModelSource.from_dict({"hf": hf, **({"task": task} if task else {})}, "model"))
    if class_ref is not None:
        from slimtorch.models.user import UserModelSource, build_user_model, read_state_dict

        if ref is not None and kwargs is None and Path(ref).is_file():
            kind, _, _ = read_state_dict(ref)
            if kind in ("slim", "slimtorch"):
                return load(ref, model=class_ref)  # the file's recorded kwargs
        fields = {"class": class_ref, "kwargs": kwargs or {}, **({"weights": ref} if ref is not None else {})}
        return build_user_model(UserModelSource.from_dict(fields, "model"))
    if ref is None:
        raise ConfigError("name a model: a zoo name, a model file, a run folder, --class or --hf", field="model")
    if Path(ref).is_dir():
        return load_run(ref)
    return load_or_create(ref)


def load_or_create(ref: str) -> nn.Module:
    """A model from a file path (``.safetensors`` / ``.slim``) or, if ``ref`` is a bare name, the zoo."""
    from slimtorch.models import create_model

    path = Path(ref)
    if path.is_file():
        return load(path)
    if path.suffix or "/" in ref:
        raise FileNotFoundError(f"model file '{ref}' does not exist")
    return create_model(ref)
