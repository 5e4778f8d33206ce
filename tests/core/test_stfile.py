"""stfile: safetensors read by seek and written tensor by tensor, interchangeable with the safetensors package."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from slimtorch.core.errors import FormatError
from slimtorch.core.stfile import copy_out, read_header, read_rows, read_tensor, tensor_out, write_file


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(7, 5, generator=g),
        "b": torch.randint(0, 255, (13,), generator=g).to(torch.uint8),
        "c.half": torch.randn(3, 4, generator=g).half(),
        "d.bf16": torch.randn(6, 2, generator=g).bfloat16(),
        "e.empty": torch.zeros(0, 4),
    }


def test_reads_what_safetensors_wrote_and_writes_what_it_reads(tmp_path):
    ref = _tensors()
    save_file(ref, str(tmp_path / "ref.safetensors"), metadata={"format": "pt"})
    entries, meta = read_header(tmp_path / "ref.safetensors")
    assert meta == {"format": "pt"} and set(entries) == set(ref)
    for k, t in ref.items():
        assert torch.equal(read_tensor(entries[k]), t)
    rows = torch.tensor([0, 2, 3, 6])  # runs [0], [2, 3], [6]
    assert torch.equal(read_rows(entries["a.weight"], rows), ref["a.weight"][rows])
    # copied (and one converted) chunk by chunk, next to an in-memory tensor
    outs = [copy_out(k, e) for k, e in entries.items()] + [
        copy_out("d.as_f32", entries["d.bf16"], torch.float32),
        tensor_out("z", torch.arange(5)),
    ]
    write_file(tmp_path / "out.safetensors", outs, {"format": "x"})
    got = load_file(str(tmp_path / "out.safetensors"))
    assert set(got) == set(ref) | {"d.as_f32", "z"}
    for k, t in ref.items():
        assert got[k].dtype == t.dtype and torch.equal(got[k], t)
    assert got["d.as_f32"].dtype == torch.float32 and torch.equal(got["d.as_f32"], ref["d.bf16"].float())
    assert read_header(tmp_path / "out.safetensors")[1] == {"format": "x"}


def test_truncated_files_are_format_errors(tmp_path):
    save_file({"w": torch.randn(64, 64)}, str(tmp_path / "f.safetensors"))
    data = (tmp_path / "f.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    entries, _ = read_header(tmp_path / "cut.safetensors")
    with pytest.raises(FormatError, match="ends early"):
        read_tensor(entries["w"])
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    with pytest.raises(FormatError, match="not a safetensors file"):
        read_header(tmp_path / "tiny.safetensors")
