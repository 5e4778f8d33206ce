"""The recipe stage 'distill' fine-tunes ctx.model from ctx.reference or a teacher file."""

import copy

import pytest
import torch

from slimtorch.core import ConfigError
from slimtorch.data import synthetic_classification
from slimtorch.distill.stage import DistillStageConfig
from slimtorch.models import create_model
from slimtorch.pipeline.context import Context
from slimtorch.pipeline.registry import STAGES


def _ctx(tmp_path, reference):
    torch.manual_seed(0)
    model = create_model("mlp", hidden=[16], in_features=64)
    data = synthetic_classification(n=64, shape=(1, 8, 8), seed=0)
    return Context(
        model=model,
        train_data=data,
        test_data=data,
        out_dir=tmp_path,
        example_input=torch.zeros(1, 1, 8, 8),
        reference=reference,
        stage_name="kd",
        stage_index=2,
    )


def _cfg(**kw):
    return DistillStageConfig.from_dict({"train": {"epochs": 1, "batch_size": 32}, **kw})


def test_stage_is_registered_and_distills_from_the_reference(tmp_path):
    reference = create_model("mlp", hidden=[32], in_features=64)
    ctx = _ctx(tmp_path, reference)
    before = copy.deepcopy(ctx.model.state_dict())
    STAGES.get("distill").fn(ctx, _cfg())
    info = ctx.info["kd"]
    assert info["teacher"] == "reference" and info["loss"] == "kl"
    assert 0 <= info["student_accuracy"] <= 1 and len(info["history"]) == 1
    assert any(not torch.equal(v, before[k]) for k, v in ctx.model.state_dict().items())
    assert (tmp_path / "02_kd" / "checkpoint.pt").is_file()


def test_stage_loads_a_teacher_file(tmp_path):
    from slimtorch.io import save_model

    teacher = create_model("mlp", hidden=[32], in_features=64)
    path = save_model(teacher, tmp_path / "t.safetensors")
    ctx = _ctx(tmp_path, None)
    STAGES.get("distill").fn(ctx, _cfg(teacher=str(path), cache_teacher=True))
    assert ctx.info["kd"]["teacher"] == str(path)
    assert (tmp_path / "02_kd" / "teacher_cache.safetensors").is_file()


@pytest.mark.parametrize("teacher", ["reference", "missing.safetensors"])
def test_stage_without_a_usable_teacher_raises(tmp_path, teacher):
    with pytest.raises(ConfigError, match="teacher"):
        STAGES.get("distill").fn(_ctx(tmp_path, None), _cfg(teacher=teacher))


def test_stage_config_round_trips_and_validates():
    cfg = _cfg(teacher={"name": "lenet5"}, teacher_weights="w.safetensors", temperature=8)
    assert DistillStageConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="alpha"):
        _cfg(alpha=2)


USER_TEACHER = '''
import torch
from torch import nn


class Teacher(nn.Module):
    """Written the way users write models: own forward, a reshape, no slimtorch imports."""

    def __init__(self, hidden: int = 24):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.head(self.body(x.reshape(x.shape[0], -1)))
'''


def test_a_users_own_class_can_be_the_teacher(tmp_path):
    (tmp_path / "mine.py").write_text(USER_TEACHER)
    import importlib.util

    spec = importlib.util.spec_from_file_location("mine_for_weights", tmp_path / "mine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(1)
    torch.save(mod.Teacher(hidden=24).state_dict(), tmp_path / "teacher.pth")  # a plain state dict
    teacher = {
        "class": f"{tmp_path / 'mine.py'}:Teacher",
        "kwargs": {"hidden": 24},
        "weights": str(tmp_path / "teacher.pth"),
    }
    ctx = _ctx(tmp_path, None)
    before = copy.deepcopy(ctx.model.state_dict())
    STAGES.get("distill").fn(ctx, _cfg(teacher=teacher))
    assert ctx.info["kd"]["teacher"].endswith("mine.py:Teacher")
    assert any(not torch.equal(v, before[k]) for k, v in ctx.model.state_dict().items())
    with pytest.raises(ConfigError, match="teacher"):  # a wrong field of the class form is named when read
        _cfg(teacher={**teacher, "wieghts": "x.pth"})
