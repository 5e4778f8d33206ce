"""distill(): frozen teacher, user-written models, feature hints, teacher cache."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from slimtorch.core import ConfigError
from slimtorch.data import synthetic_classification
from slimtorch.distill import DistillConfig, FeaturePair, distill, distill_fit, kd_loss
from slimtorch.distill.transform import make_distill_loss
from slimtorch.train import OptimizerConfig, TrainConfig, agreement


class UserTeacher(nn.Module):
    """A user's own model: custom attribute names and forward; records how it is called."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Linear(8 * 4 * 4, 10)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        h = torch.relu(self.body(x))
        return self.head(nn.functional.adaptive_avg_pool2d(h, 4).flatten(1))


class UserStudent(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.fc = nn.Linear(width * 4 * 4, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 4).flatten(1))


def _data(n=96):
    return synthetic_classification(n=n, shape=(1, 8, 8), seed=0)


def _trained_teacher():
    torch.manual_seed(0)
    t = UserTeacher()
    from slimtorch.train import fit

    fit(t, _data(), TrainConfig(epochs=6, batch_size=16, optimizer=OptimizerConfig(lr=0.05)), verbose=False)
    t.calls.clear()
    t.zero_grad(set_to_none=True)  # fit leaves the last step's gradients
    return t


def _cfg(**kw):
    train = kw.pop("train", TrainConfig(epochs=2, batch_size=32, optimizer=OptimizerConfig(lr=0.05), eval_every=0))
    return DistillConfig(train=train, **kw)


def test_teacher_runs_in_eval_mode_without_grad_and_gets_no_update():
    teacher = _trained_teacher().train()  # a teacher handed over in train mode
    flags_before = [p.requires_grad for p in teacher.parameters()]
    state = copy.deepcopy(teacher.state_dict())
    torch.manual_seed(1)
    student = UserStudent()
    out = distill(student, _cfg(), teacher, _data(), verbose=False)
    assert out is not student  # a trained copy
    assert teacher.calls and all(not training and not grad for training, grad in teacher.calls)
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, state[k])
    # state restored afterwards
    assert teacher.training
    assert [p.requires_grad for p in teacher.parameters()] == flags_before


def test_distilled_student_moves_towards_the_teacher():
    teacher = _trained_teacher()
    torch.manual_seed(1)
    student = UserStudent()
    before = agreement(student, teacher, _data())["mean_kl"]
    cfg = _cfg(alpha=1.0, temperature=1.0, train=TrainConfig(epochs=6, batch_size=16, eval_every=0))
    student = distill(student, cfg, teacher, _data(), verbose=False)
    after = agreement(student, teacher, _data())["mean_kl"]
    assert after < 0.7 * before, (before, after)


def test_loss_fn_equals_kd_loss_on_the_teacher_outputs():
    teacher = _trained_teacher().eval()
    student = UserStudent()
    x, y = _data()[:16]
    cfg = _cfg(temperature=3.0, alpha=0.6)
    got = make_distill_loss(teacher, cfg)(student, x, y)
    with torch.no_grad():
        t = teacher(x)
    torch.testing.assert_close(got, kd_loss(student(x), t, y, 3.0, 0.6))


def test_mse_mode_with_alpha_one_is_seed_logit_matching():
    teacher = _trained_teacher().eval()
    student = UserStudent()
    x, y = _data()[:16]
    got = make_distill_loss(teacher, _cfg(loss="mse", alpha=1.0))(student, x, y)
    with torch.no_grad():
        t = teacher(x)
    torch.testing.assert_close(got, nn.functional.mse_loss(student(x), t))


def test_cache_gives_identical_losses_and_weights_to_no_cache(tmp_path):
    teacher = _trained_teacher()
    torch.manual_seed(1)
    init = UserStudent()
    a, b = copy.deepcopy(init), copy.deepcopy(init)
    ra = distill_fit(a, _cfg(), teacher, _data(), verbose=False)
    rb = distill_fit(
        b, _cfg(cache_teacher=True), teacher, _data(), cache_path=tmp_path / "c.safetensors", verbose=False
    )
    assert [h["train_loss"] for h in ra.history] == pytest.approx([h["train_loss"] for h in rb.history], rel=1e-5)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, msg=k)
    assert (tmp_path / "c.safetensors").is_file()


def test_cache_is_reused_when_valid_and_rebuilt_when_the_teacher_changes(tmp_path):
    teacher = _trained_teacher()
    path = tmp_path / "c.safetensors"
    distill(UserStudent(), _cfg(cache_teacher=True), teacher, _data(), cache_path=path, verbose=False)
    teacher.calls.clear()
    distill(UserStudent(), _cfg(cache_teacher=True), teacher, _data(), cache_path=path, verbose=False)
    assert teacher.calls == []  # no pass over the data (no feature pairs, so no adapter probe either)
    with torch.no_grad():
        teacher.head.bias.add_(1.0)
    teacher.calls.clear()
    distill(UserStudent(), _cfg(cache_teacher=True), teacher, _data(), cache_path=path, verbose=False)
    assert len(teacher.calls) >= 1  # recomputed (one batch covers the data)


def test_cache_with_jitter_raises_config_error():
    cfg = DistillConfig.model_construct(
        cache_teacher=True, train=TrainConfig(jitter=2), features=(), loss="kl", temperature=4.0, alpha=0.9
    )
    with pytest.raises(ConfigError, match="jitter"):
        distill(UserStudent(), cfg, _trained_teacher(), _data(), verbose=False)


@pytest.mark.parametrize("cache", [False, True])
def test_feature_hints_train_adapters_and_leave_no_trace(cache, tmp_path):
    teacher = _trained_teacher()
    torch.manual_seed(1)
    student = UserStudent(width=4)
    pair = FeaturePair(student="conv", teacher="body", weight=1.0)  # 4 -> 8 channels via a 1x1 conv
    cfg = _cfg(features=(pair,), cache_teacher=cache, alpha=1.0)
    # hint term on a fixed batch, with a fresh adapter, before and after training
    res = distill_fit(student, cfg, teacher, _data(), cache_path=tmp_path / "c.safetensors", verbose=False)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert not student.conv._forward_hooks and not teacher.body._forward_hooks
    assert set(dict(student.named_children())) == {"conv", "fc"}


def test_feature_hints_reduce_the_hint_loss():
    teacher = _trained_teacher()
    torch.manual_seed(1)
    student = UserStudent(width=4)
    cfg = _cfg(
        features=(FeaturePair(student="conv", teacher="body", weight=10.0),),
        alpha=0.0,
        train=TrainConfig(epochs=4, batch_size=32, optimizer=OptimizerConfig(lr=0.05), eval_every=0),
    )
    res = distill_fit(student, cfg, teacher, _data(), verbose=False)
    # alpha=0 -> CE + hint; CE alone on this data starts ~2.3, so the drop includes the hint term
    assert res.history[-1]["train_loss"] < 0.5 * res.history[0]["train_loss"]


def test_unknown_feature_layer_names_the_layer():
    cfg = _cfg(features=(FeaturePair(student="nope", teacher="body"),))
    with pytest.raises(ConfigError, match="nope"):
        distill(UserStudent(), cfg, _trained_teacher(), _data(), verbose=False)


def test_compressed_teacher_with_parametrized_mask_works():
    class Mask(nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    teacher = _trained_teacher()
    parametrize.register_parametrization(
        teacher.head, "weight", Mask((torch.rand_like(teacher.head.weight) > 0.5).float())
    )
    student = UserStudent()
    student = distill(student, _cfg(), teacher, _data(), verbose=False)
    assert parametrize.is_parametrized(teacher.head)
    assert all(p.requires_grad for p in teacher.parameters())  # flags restored to trainable


def test_student_and_teacher_must_differ():
    t = _trained_teacher()
    with pytest.raises(ValueError, match="same object"):
        distill(t, _cfg(), t, _data(), verbose=False)


def test_cache_works_for_datasets_that_are_not_tensor_datasets(tmp_path):
    class ListData(torch.utils.data.Dataset):
        def __init__(self, base):
            self.items = [base[i] for i in range(len(base))]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            x, y = self.items[i]
            return x, int(y)

    teacher = _trained_teacher()
    torch.manual_seed(1)
    init = UserStudent()
    a, b = copy.deepcopy(init), copy.deepcopy(init)
    ra = distill_fit(a, _cfg(), teacher, _data(), verbose=False)
    rb = distill_fit(
        b, _cfg(cache_teacher=True), teacher, ListData(_data()), cache_path=tmp_path / "c.st", verbose=False
    )
    assert ra.history[-1]["train_loss"] == pytest.approx(rb.history[-1]["train_loss"], rel=1e-5)


@pytest.mark.parametrize("fn", [distill, distill_fit])
def test_the_old_argument_order_is_a_type_error_showing_the_new_one(fn):
    """``fn(student, teacher, train_data, config)`` was the order before the config moved second."""
    with pytest.raises(TypeError, match=r"\(student, config, teacher, train_data\)"):
        fn(UserStudent(), _trained_teacher(), _data(), _cfg(), verbose=False)
