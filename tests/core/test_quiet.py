"""Scoped silence and torch settings are undone on exit, also when the block raises."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest
import torch

from slimtorch.core.quiet import log_level, num_threads, quantized_engine, quiet


def _state():
    return (
        logging.getLogger().level,
        logging.getLogger("torch.onnx").level,
        sys.stderr,
        sys.stdout,
        len(warnings.filters),
        torch.backends.quantized.engine,
        torch.get_num_threads(),
    )


def test_quiet_hides_stderr_logs_and_warnings_then_restores(capsys, caplog):
    before = _state()
    with quiet(stdout=True):
        print("to stderr", file=sys.stderr)
        print("to stdout")
        logging.getLogger("somelib").warning("a warning record")
        warnings.warn("a warning", DeprecationWarning, stacklevel=1)
        assert logging.getLogger().level == logging.ERROR
    assert _state() == before
    out = capsys.readouterr()
    assert "to stderr" not in out.err and "to stdout" not in out.out
    assert "a warning record" not in caplog.text


def test_quiet_restores_on_error_and_keeps_the_silenced_text_as_a_note():
    before = _state()
    with pytest.raises(RuntimeError) as info, quiet():
        print("the runtime said why", file=sys.stderr)
        raise RuntimeError("conversion failed")
    assert _state() == before
    assert any("the runtime said why" in n for n in info.value.__notes__)


def test_log_level_restores_named_loggers_on_error():
    lg = logging.getLogger("torch.onnx")
    lg.setLevel(logging.DEBUG)
    try:
        with pytest.raises(ValueError), log_level(logging.ERROR, "torch.onnx"):
            assert lg.level == logging.ERROR
            raise ValueError
        assert lg.level == logging.DEBUG
    finally:
        lg.setLevel(logging.NOTSET)


def test_engine_and_threads_are_restored_on_error():
    old_engine, old_threads = torch.backends.quantized.engine, torch.get_num_threads()
    other = next(e for e in torch.backends.quantized.supported_engines if e not in (old_engine, "none"))
    with pytest.raises(KeyError), quantized_engine(other), num_threads(old_threads + 1):
        assert torch.backends.quantized.engine == other and torch.get_num_threads() == old_threads + 1
        raise KeyError
    assert torch.backends.quantized.engine == old_engine and torch.get_num_threads() == old_threads


def test_torch_fx_backend_leaves_the_quantized_engine_as_it_found_it(tmp_path):
    from slimtorch.deploy import Int8Config, to_int8
    from tests.deploy.int8_models import MLPUserNet

    torch.manual_seed(0)
    model, x = MLPUserNet().eval(), torch.randn(16, 32)
    old = torch.backends.quantized.engine
    other = "qnnpack" if "qnnpack" in torch.backends.quantized.supported_engines else old
    torch.backends.quantized.engine = other
    try:
        q = to_int8(model, Int8Config(mode="dynamic", backend="torch_fx"), x, out_dir=tmp_path)
        assert torch.backends.quantized.engine == other
        # the converted model still runs on its own (x86) kernels while another engine is current
        assert torch.nn.functional.cosine_similarity(q(x), model(x)).min() > 0.98
        assert torch.backends.quantized.engine == other
    finally:
        torch.backends.quantized.engine = old
