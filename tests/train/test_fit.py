import subprocess
import sys
import textwrap

import pytest
import torch

from slimtorch.core import FormatError
from slimtorch.train import OptimizerConfig, TrainConfig, evaluate, fit, load_checkpoint
from slimtorch.train.optim import build_scheduler

CFG = TrainConfig(epochs=4, batch_size=32, optimizer=OptimizerConfig(lr=0.02, weight_decay=1e-4))


def _net():
    from tests.user_models import UserNet

    torch.manual_seed(0)
    return UserNet(width=4)


def test_fit_learns_the_synthetic_task(tiny_data):
    train, test = tiny_data
    model = _net()
    before = evaluate(model, test).accuracy
    fit(model, train, CFG, verbose=False)
    after = evaluate(model, test).accuracy
    assert after > max(before, 0.5)


def test_same_seed_gives_bitwise_equal_weights(tiny_data):
    train, _ = tiny_data
    a, b = _net(), _net()
    fit(a, train, CFG, verbose=False)
    fit(b, train, CFG, verbose=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_resume_after_interruption_is_bitwise_equal(tiny_data, tmp_path):
    train, _ = tiny_data
    full = _net()
    fit(full, train, CFG, verbose=False)

    # "Crash" after 2 epochs: run a 4-epoch config but stop via a callback raising.
    from slimtorch.train import Callback

    class Crash(Callback):
        def on_epoch_end(self, state):
            if state.epoch == 1:
                raise KeyboardInterrupt

    part = _net()
    with pytest.raises(KeyboardInterrupt):
        fit(part, train, CFG, callbacks=[Crash()], checkpoint_dir=tmp_path, verbose=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1

    resumed = _net()
    res = fit(resumed, train, CFG, checkpoint_dir=tmp_path, resume=True, verbose=False)
    assert res.resumed_from == 1 and res.epochs_run == 3
    for (k, va), vb in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(va, vb), k


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    """A real crash: the training process is SIGKILLed mid-run, then resumed."""
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys, torch
            sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parents[2])!r})
            from slimtorch.data import get_dataset
            from slimtorch.train import Callback, TrainConfig, fit
            from tests.user_models import UserNet
            mode, out = sys.argv[1], sys.argv[2]
            train, _ = get_dataset("synthetic", n_train=128, n_test=8)
            torch.manual_seed(0)
            model = UserNet(width=4)
            class Kill(Callback):
                def on_epoch_end(self, state):
                    if mode == "kill" and state.epoch == 1:
                        os.kill(os.getpid(), signal.SIGKILL)
            cbs = [Kill()]
            fit(model, train, TrainConfig(epochs=3, batch_size=32), callbacks=cbs,
                checkpoint_dir=out + "/ckpt", resume=(mode == "resume"), verbose=False)
            from safetensors.torch import save_file
            save_file({{k: v.contiguous() for k, v in model.state_dict().items()}}, out + "/final.safetensors")
            """
        )
    )
    run = lambda mode, out: subprocess.run([sys.executable, str(script), mode, str(out)], capture_output=True)  # noqa: E731
    assert run("plain", tmp_path / "a").returncode == 0
    killed = run("kill", tmp_path / "b")
    assert killed.returncode == -9
    assert not (tmp_path / "b" / "final.safetensors").exists()
    assert run("resume", tmp_path / "b").returncode == 0
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "a" / "final.safetensors"), load_file(tmp_path / "b" / "final.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_checkpoint_is_refused(tmp_path):
    p = tmp_path / "checkpoint.pt"
    p.write_bytes(b"\x80\x04garbage")
    with pytest.raises(FormatError):
        load_checkpoint(p)


def test_malicious_pickle_checkpoint_is_not_executed(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p = tmp_path / "checkpoint.pt"
    torch.save({"kind": "slimtorch.checkpoint.v1", "x": Evil()}, p, pickle_module=pickle)
    with pytest.raises(FormatError):
        load_checkpoint(p)
    assert not marker.exists()


def test_cosine_schedule_ends_at_min_lr():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    from slimtorch.train import ScheduleConfig

    sched = build_scheduler(opt, ScheduleConfig(name="cosine", min_lr_ratio=0.1), epochs=2, steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_empty_training_data_is_refused():
    from torch.utils.data import TensorDataset

    with pytest.raises(ValueError, match="empty"):
        fit(_net(), TensorDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)), CFG)


def test_jitter_shifts_each_image_within_bounds():
    from slimtorch.train.loop import random_shift

    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 4] = 1.0  # one bright pixel in the centre
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    pos = out.flatten(1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert out.sum() == 64  # nothing lost: the shift never pushes the pixel out
    assert ((rows - 4).abs() <= 2).all() and ((cols - 4).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5  # images get different shifts


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_keeps_running_statistics_but_trains_the_affine_weights(freeze):
    from slimtorch.data import get_dataset
    from tests.user_models import UserNet

    train, _ = get_dataset("synthetic", n_train=64, n_test=8)
    torch.manual_seed(0)
    model = UserNet(width=4)
    mean0, gamma0 = model.bn.running_mean.clone(), model.bn.weight.detach().clone()
    fit(model, train, TrainConfig(epochs=1, batch_size=16, freeze_bn=freeze, optimizer={"lr": 0.1}), verbose=False)
    assert torch.equal(model.bn.running_mean, mean0) == freeze
    assert not torch.equal(model.bn.weight.detach(), gamma0)
