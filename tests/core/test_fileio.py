import os

import pytest

from slimtorch.core import ConfigError, atomic_write_bytes, prepare_output_dir


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = atomic_write_bytes(tmp_path / "a" / "f.bin", b"hello")
    assert p.read_bytes() == b"hello"
    assert os.listdir(tmp_path / "a") == ["f.bin"]


def test_atomic_write_failure_keeps_old_content(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    class Boom(bytes):
        pass

    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_output_dir_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match="--force"):
        prepare_output_dir(out)
    assert (out / "results.json").exists()
    prepare_output_dir(out, resume=True)
    assert (out / "results.json").exists()
    prepare_output_dir(out, force=True)
    assert not (out / "results.json").exists()
