"""core.progress.track: a bar on a terminal, plain lines elsewhere, always on stderr; and where it is used."""

from __future__ import annotations

import contextlib
import io
import sys

from slimtorch.core.progress import track


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal(capsys):
    assert list(track(range(5), "work", every_s=3600)) == [0, 1, 2, 3, 4]
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.strip().splitlines() == ["work: 5/5 (0 s)"]  # only the last one when updates are rare


def test_a_bar_on_a_terminal_goes_to_stderr_even_under_redirect_stdout(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    swallowed = io.StringIO()
    with contextlib.redirect_stdout(swallowed):
        assert sum(track(range(3), "calibrating")) == 3
    assert "calibrating" in term.getvalue()
    assert swallowed.getvalue() == ""


def test_switched_off_by_environment(monkeypatch, capsys):
    monkeypatch.setenv("SLIMTORCH_PROGRESS", "0")
    assert list(track([1, 2], "quiet")) == [1, 2]
    assert capsys.readouterr().err == ""


def test_int8_fallback_reports_its_sensitivity_pass(tmp_path, capsys):
    from slimtorch.deploy import FidelityTarget, accuracy_aware_fallback

    layers = ["a", "b", "c"]
    bad = {"a": 0.3, "b": 0.1, "c": 0.05}  # KL each layer adds when quantized

    def quantize(excluded):
        path = tmp_path / f"{'_'.join(sorted(excluded)) or 'all'}.onnx"
        path.write_text(",".join(excluded))
        return path

    def evaluate(path):
        excluded = [x for x in path.read_text().split(",") if x]
        return {"mean_kl": sum(v for k, v in bad.items() if k not in excluded)}

    res = accuracy_aware_fallback(
        quantize, evaluate, layers, [], FidelityTarget(min_agreement=None, max_kl=0.1), budget=2
    )
    assert res.excluded[:1] == ["a"]  # the most sensitive layer goes first
    err = capsys.readouterr().err
    assert "INT8 fallback: sensitivity of each unit: 3/3" in err


def test_int8_calibration_reports_progress(tmp_path, capsys):
    import torch

    from slimtorch.deploy import to_int8
    from tests.deploy.int8_models import conv_net

    x = torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    calibration = "minmax"
    to_int8(
        conv_net(),
        {"backend": "onnxruntime", "mode": "static", "calibration": calibration, "calib_batch_size": 8},
        x,
        out_dir=tmp_path,
    )
    assert f"INT8 calibration ({calibration}): 4/4" in capsys.readouterr().err


def test_adaround_reports_each_layer(capsys):
    import torch

    from slimtorch.deploy import adaround
    from tests.deploy.int8_models import conv_net

    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    adaround(conv_net(), [(x,)], iters=2, samples=32)
    assert "AdaRound: layers rounded: 4/4" in capsys.readouterr().err  # conv1, dw, pw, head


def test_nested_loops_share_one_bar_on_a_terminal(monkeypatch):
    from slimtorch.core import progress

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    seen = [(i, j) for i in track(range(2), "outer") for j in track(range(3), f"inner {i}")]
    assert len(seen) == 6 and progress._live is None  # (a second live display would raise in rich)
    assert all(s in term.getvalue() for s in ("outer", "inner 0", "inner 1"))


def test_only_rank_zero_shows_progress(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    assert list(track(range(3), "worker", every_s=0)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    list(track(range(3), "main", every_s=3600))
    assert capsys.readouterr().err.strip() == "main: 3/3 (0 s)"


def test_loops_that_log_their_own_lines_add_none_off_a_terminal(capsys):
    from slimtorch.core.progress import task

    assert list(track(range(3), "epochs", plain=False, every_s=0)) == [0, 1, 2]
    with task("candidates", plain=False, every_s=0) as advance:
        advance()
    assert capsys.readouterr().err == ""


def test_training_shows_epoch_and_batch_bars_and_keeps_its_epoch_lines(monkeypatch):
    import torch
    from torch.utils.data import TensorDataset

    from slimtorch.train import TrainConfig, fit

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    fit(torch.nn.Linear(4, 2), data, TrainConfig(epochs=2, batch_size=8), verbose=True)
    shown = term.getvalue()
    assert "training: epochs" in shown and "epoch 2/2" in shown
    assert "epoch 1/2 loss" in shown  # the per-epoch summary line, printed above the bar


def test_kmeans_reports_the_layers_it_shares(capsys):
    import torch

    from slimtorch.quantize import kmeans_share

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    kmeans_share(model, {"bits": 2})
    assert "k-means: layers shared: 2/2" in capsys.readouterr().err
