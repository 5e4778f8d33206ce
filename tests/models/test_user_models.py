"""Users' own models in recipes, model files and the CLI: ``{class: ...}`` and ``{hf: ...}`` sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

import slimtorch
from slimtorch.cli import main
from slimtorch.core.errors import ConfigError, FormatError
from slimtorch.models.user import UserModelSource, build_user_model, import_class
from slimtorch.pipeline import load_recipe, recipe_from_dict, run_recipe

ROOT = Path(__file__).parents[2]
CNN = "examples/my_models.py:MnistCNN"


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # class paths in recipes are relative to the working directory


def _cnn_state(tmp_path: Path, **kwargs) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = import_class(CNN)(**kwargs).eval()
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_class_source_loads_a_state_dict_file_read_with_weights_only(tmp_path):
    ref, path = _cnn_state(tmp_path, width=8)
    model = build_user_model(UserModelSource.from_dict({"class": CNN, "kwargs": {"width": 8}, "weights": str(path)}))
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model(x), ref(x))
    assert model.slimtorch_spec == {"class": CNN, "kwargs": {"width": 8}}


def test_class_source_accepts_safetensors_and_a_nested_checkpoint(tmp_path):
    ref, _ = _cnn_state(tmp_path, width=8)
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, st)
    nested = tmp_path / "ckpt.pt"
    torch.save({"model_state": ref.state_dict(), "step": 3}, nested)
    x = torch.randn(1, 1, 28, 28)
    for w in (st, nested):
        m = build_user_model(UserModelSource.from_dict({"class": CNN, "kwargs": {"width": 8}, "weights": str(w)}))
        assert torch.equal(m(x), ref(x))


def test_mismatched_weights_name_missing_unexpected_and_shape_keys(tmp_path):
    ref, _ = _cnn_state(tmp_path, width=8)
    state = dict(ref.state_dict())
    state.pop("fc2.bias")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(FormatError) as info:  # width 16 model: conv shapes differ too
        build_user_model(UserModelSource.from_dict({"class": CNN, "weights": str(path)}))
    msg = str(info.value)
    assert "missing: fc2.bias" in msg and "unexpected: extra.weight" in msg
    assert "shape mismatch: bn2.bias (16,) vs model (32,)" in msg


def test_a_pickled_whole_model_is_refused(tmp_path):
    ref, _ = _cnn_state(tmp_path, width=8)
    path = tmp_path / "whole.pt"
    torch.save(ref, path)  # pickles the class: weights_only refuses it
    with pytest.raises(FormatError, match="weights_only=True"):
        build_user_model(UserModelSource.from_dict({"class": CNN, "kwargs": {"width": 8}, "weights": str(path)}))


def test_bad_class_references_are_one_clear_error():
    with pytest.raises(ConfigError, match="package.module:ClassName"):
        recipe_from_dict({"name": "x", "model": {"class": "no_colon"}})
    with pytest.raises(ConfigError, match="nn.Module classes there: MnistCNN"):
        import_class("examples/my_models.py:Missing")
    with pytest.raises(ConfigError, match="cannot import module 'no_such_pkg.models'"):
        import_class("no_such_pkg.models:Net")
    with pytest.raises(ConfigError, match="unknown field 'model.weigths'"):
        recipe_from_dict({"name": "x", "model": {"class": CNN, "weigths": "w.pth"}})


def test_a_file_never_imports_the_class_it_records(tmp_path, monkeypatch):
    """A model file records its class, but loading it imports nothing unless the user names the class."""
    from slimtorch.models import user

    model = import_class(CNN)(width=8)
    model.slimtorch_spec = {"class": CNN, "kwargs": {"width": 8}}
    path = slimtorch.save(model, tmp_path / "m.safetensors")
    monkeypatch.setattr(user, "_ALLOWED", {})  # a fresh process: nothing allow-listed
    with pytest.raises(FormatError, match="does not import code named by a file"):
        slimtorch.load(path)
    loaded = slimtorch.load(path, model=CNN)  # explicit: import it, kwargs from the file
    x = torch.randn(1, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))
    with pytest.raises(FormatError, match="not the class"):
        slimtorch.load(path, model="tests/user_models.py:UserNet")


def _tiny_user_recipe() -> dict:
    data = yaml.safe_load((ROOT / "recipes" / "user_cnn_mnist.yaml").read_text())
    data["data"].update(train_subset=128, test_subset=64)
    data["measure"] = {"latency_batches": [1], "latency_runs": 1}
    for stage in data["stages"]:
        for node in (stage, stage.get("finetune") or {}):
            if "epochs" in node:
                node["epochs"] = 1
    return data


def test_user_class_recipe_runs_end_to_end_and_its_run_folder_reloads(tmp_path, capsys):
    recipe = load_recipe(ROOT / "recipes" / "user_cnn_mnist.yaml")
    assert recipe.model.class_ == CNN
    res = run_recipe(recipe_from_dict(_tiny_user_recipe()), tmp_path / "run", force=True, verbose=False)
    assert res.final["nonzero"] < 0.2 * res.final["params"]  # 90 % pruned for real
    assert yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["model"]["class"] == CNN  # how to rebuild
    assert main(["eval", str(tmp_path / "run"), "--data", "synthetic"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
    # the final model file of the user class: with --class, its recorded kwargs
    assert main(["measure", str(tmp_path / "run" / "model.safetensors"), "--class", CNN, "--data", "synthetic"]) == 0


def test_cli_eval_of_a_state_dict_with_class_and_kwargs(tmp_path, capsys):
    _, path = _cnn_state(tmp_path, width=8)
    assert main(["eval", str(path), "--class", CNN, "--kwargs", '{"width": 8}', "--data", "synthetic"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] > 0
    assert main(["eval", str(path), "--class", CNN, "--data", "synthetic"]) == 2  # wrong kwargs: shape diff
    assert "shape mismatch" in capsys.readouterr().err


def _tiny_bert_dir(tmp_path: Path, task: str) -> Path:
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    if task == "causal-lm":
        cfg = LlamaConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=32,
        )
        model = LlamaForCausalLM(cfg)
    else:
        cfg = BertConfig(
            vocab_size=64,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
            num_labels=3,
        )
        model = BertForSequenceClassification(cfg) if task == "sequence-classification" else BertModel(cfg)
    out = tmp_path / task
    model.save_pretrained(out)
    return out


@pytest.mark.parametrize("task", ["sequence-classification", "sentence-embedding", "causal-lm"])
def test_hf_directory_loads_offline_and_its_model_file_rebuilds(tmp_path, task):
    from slimtorch.models.hf import HFModelSource, build_hf_model

    folder = _tiny_bert_dir(tmp_path, task)
    model = build_hf_model(HFModelSource(hf=str(folder), task=task))
    ids = torch.randint(1, 64, (2, 8))
    with torch.no_grad():
        out = model(ids)
    if task == "causal-lm":
        assert type(model).__name__ == "LlamaForCausalLM" and out.logits.dtype == torch.float32
        return
    assert out.shape == ((2, 3) if task == "sequence-classification" else (2, 16))
    path = slimtorch.save(model, tmp_path / "m.safetensors")
    again = slimtorch.load(path)  # rebuilt from {"hf": folder, "task": task}: no code imported
    with torch.no_grad():
        assert torch.allclose(again(ids), out, atol=1e-6)


def test_hf_recipe_source_and_bad_directory(tmp_path):
    folder = _tiny_bert_dir(tmp_path, "sequence-classification")
    recipe = recipe_from_dict({"name": "x", "model": {"hf": str(folder)}, "data": None})
    assert recipe.model.task == "sequence-classification"
    with pytest.raises(FileNotFoundError, match="no config.json"):
        slimtorch.api.resolve_model(None, hf=str(tmp_path / "nothing"))


def test_cli_auto_searches_a_user_class_from_a_state_dict(tmp_path, capsys):
    _, path = _cnn_state(tmp_path, width=8)
    out = tmp_path / "auto"
    rc = main(
        [
            "auto",
            str(path),
            "--class",
            CNN,
            "--kwargs",
            '{"width": 8}',
            "--data",
            "synthetic",
            "--max-candidates",
            "1",
            "--finetune-epochs",
            "0",
            "--kmeans-epochs",
            "0",
            "--max-drop",
            "100",
            "-o",
            str(out),
        ]
    )
    assert rc == 0 and (out / "best.slim").exists()
    capsys.readouterr()
    # the search's files record the class; loading them names it explicitly
    assert main(["eval", str(out / "best.slim"), "--class", CNN, "--data", "synthetic"]) == 0
    assert '"accuracy"' in capsys.readouterr().out


def test_cli_measures_a_hf_directory_without_data(tmp_path, capsys):
    folder = _tiny_bert_dir(tmp_path, "sentence-embedding")  # token-id input: random ids, not floats
    assert main(["measure", "--hf", str(folder), "--task", "sentence-embedding", "--data", "none"]) == 0
    assert "sentence-embedding" in capsys.readouterr().out


def test_hf_sequence_classifier_runs_a_recipe_end_to_end(tmp_path):
    from slimtorch.pipeline import run_recipe

    folder = _tiny_bert_dir(tmp_path, "sequence-classification")
    recipe = recipe_from_dict(
        {
            "name": "hf_prune",
            "model": {"hf": str(folder)},
            "data": None,
            "stages": [{"type": "prune", "prune": {"method": "magnitude", "sparsity": 0.5}}],
        }
    )
    res = run_recipe(recipe, tmp_path / "run", verbose=False)
    first, last = res.records[0], res.records[-1]
    assert last["nonzero"] < first["nonzero"]
    again = slimtorch.api.resolve_model(str(res.out_dir))  # the run folder rebuilds the model, no code imported
    ids = torch.randint(1, 64, (2, 8))
    with torch.no_grad():
        assert again(ids).shape == (2, 3)
