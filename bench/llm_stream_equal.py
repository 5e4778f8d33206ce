"""Check on the real model that layer-streamed GPTQ writes the in-memory GPTQ's tensors, bit for bit.

    MALLOC_MMAP_THRESHOLD_=131072 OMP_NUM_THREADS=1 python bench/llm_stream_equal.py CALIB.safetensors

``CALIB.safetensors`` holds ``input_ids`` (N, L), e.g. bench/llm.py's calibration windows. Runs
:func:`quantize_gptq_streamed` and :func:`quantize_gptq` on SmolLM2-135M in one process at one
thread (about 15 minutes on two busy cores) and prints whether every tensor of the two folders
is equal. Run on 2026-12-03 with bench/llm.py's 32 x 512 calibration windows: all equal.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(calib: str) -> None:
    import torch
    from safetensors.torch import load_file

    from slimtorch.models.llm import hf_directory, load_causal_lm
    from slimtorch.quantize.gptq import quantize_gptq, quantize_gptq_streamed
    from slimtorch.quantize.qlinear import save_quantized_lm

    torch.set_num_threads(1)
    ids = load_file(calib)["input_ids"]
    cfg = {"grid": {"bits": 4, "group_size": 128}}
    with tempfile.TemporaryDirectory() as tmp:
        quantize_gptq_streamed(hf_directory(), Path(tmp) / "streamed", cfg, ids)
        model, _ = load_causal_lm(hf_directory())
        save_quantized_lm(quantize_gptq(model, cfg, ids, inplace=True), Path(tmp) / "memory")
        a = load_file(str(Path(tmp) / "memory" / "model.safetensors"))
        b = load_file(str(Path(tmp) / "streamed" / "model.safetensors"))
        bad = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
        print(json.dumps({"keys_equal": sorted(a) == sorted(b), "differing": len(bad), "first": bad[:6]}))


if __name__ == "__main__":
    main(sys.argv[1])
