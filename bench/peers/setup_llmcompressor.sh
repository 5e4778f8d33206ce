#!/usr/bin/env bash
# A separate virtual environment for llmcompressor, the GPTQ/SparseGPT peer of bench/llm.py.
#
#   bash bench/peers/setup_llmcompressor.sh      # creates ./.venv-llmc (idempotent)
#
# llmcompressor 0.14 keeps torch 2.13.0 but moves transformers (and pulls its own
# compressed-tensors), so it cannot share slimtorch's .venv. torch is installed first,
# pinned to the CPU wheel, so that llmcompressor's torch requirement is already met and
# pip does not fetch a CUDA build. bench/peers/llmcompressor_run.py runs with this
# environment's python; bench/llm_peers.py launches it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
VENV=${LLMC_VENV:-.venv-llmc}
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
if ! "$VPY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  # pip's find-links carries the CPU wheel (2.13.0+cpu sorts above a plain 2.13.0), as for .venv.
  "$VPY" -m pip install -q "torch==2.13.0"
fi
if ! "$VPY" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('llmcompressor') == '0.14.0.1' else 1)" 2>/dev/null; then
  "$VPY" -m pip install -q "llmcompressor==0.14.0.1"
fi
"$VPY" - <<'PY'
import importlib.metadata as m
import torch
assert torch.__version__.startswith("2.13.0"), f"llmcompressor moved torch to {torch.__version__}"
print("llmcompressor", m.version("llmcompressor"), "| torch", torch.__version__,
      "| transformers", m.version("transformers"), "| compressed-tensors", m.version("compressed-tensors"))
PY
