"""One layer-streamed calibration in a fresh process, so its ``ru_maxrss`` is the calibration's own peak.

    python bench/llm_stream_runner.py --model DIR --calib calib.safetensors --config '{"grid": ...}' \
        --out OUT_DIR --facts facts.json --threads 1

Called by ``bench/llm.py`` for the ``*_streamed`` rows (as llmcompressor's runner is
for its rows): the process imports slimtorch, reads the calibration ids from a file
(tokenizing the text corpora would raise the peak by what the tokenizer needs, which
is not calibration), runs :func:`slimtorch.quantize.gptq.quantize_gptq_streamed`
and writes its facts: ``calib_seconds`` (wall time of the call),
``peak_rss_mb`` (``ru_maxrss`` at its end: imports + calibration, the float model
never loaded) and ``imports_rss_mb`` (``ru_maxrss`` before the call: torch, transformers,
accelerate, slimtorch, the model's modeling code and the ids).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--config", required=True, help="GPTQConfig as JSON")
    ap.add_argument("--out", required=True)
    ap.add_argument("--facts", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import accelerate  # noqa: F401  (imported by the call anyway: counted with the imports)
    import torch
    import transformers  # noqa: F401
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM  # noqa: F401
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    from slimtorch.quantize.gptq import quantize_gptq_streamed

    # The model's modeling code (transformers imports it lazily, on first use: seconds): an import like the
    # others, not calibration (llmcompressor's calib_seconds starts with its model already built).
    MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(args.model))]

    torch.set_num_threads(args.threads)
    ids = load_file(args.calib)["input_ids"]
    imports = _rss_mb()
    t0 = time.perf_counter()
    quantize_gptq_streamed(args.model, args.out, json.loads(args.config), ids)
    seconds = round(time.perf_counter() - t0, 2)
    Path(args.facts).write_text(
        json.dumps(
            {
                "calib_seconds": seconds,
                "peak_rss_mb": _rss_mb(),
                "imports_rss_mb": imports,
                "threads": torch.get_num_threads(),
                "calib_shape": list(ids.shape),
            }
        )
    )


if __name__ == "__main__":
    main()
