#!/usr/bin/env bash
# onnxruntime-genai 0.18.0, the int4 CPU runtime peer of bench/llm_deploy.py (bench/peers/genai_peer.py).
#
#   bash bench/peers/setup_genai.sh      # installs it into slimtorch's ./.venv (idempotent)
#
# It lives in slimtorch's own .venv, unlike llmcompressor (.venv-llmc): the wheel needs
# only numpy>=1.21.6 and onnxruntime>=1.31, which .venv already has, and its model builder
# runs on the torch, transformers, onnx and onnx-ir that are there. The peer then runs
# in the same process and on the same onnxruntime as slimtorch's runtime. A constraints
# file pins what .venv has now, so pip fails rather than moving torch, onnxruntime,
# transformers, onnx or numpy.
set -euo pipefail
cd "$(dirname "$0")/../.."
VPY=${VENV:-.venv}/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ ! -x "$VPY" ]]; then
  echo "no $VPY: run scripts/setup.sh first" >&2
  exit 1
fi
if ! "$VPY" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('onnxruntime-genai') == '0.18.0' else 1)" 2>/dev/null; then
  constraints=$(mktemp)
  trap 'rm -f "$constraints"' EXIT
  "$VPY" - "$constraints" <<'PY'
import importlib.metadata as m, sys
pins = [f"{p}=={m.version(p)}" for p in ("torch", "onnxruntime", "transformers", "onnx", "onnx-ir", "numpy", "protobuf")]
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
PY
  "$VPY" -m pip install -q -c "$constraints" "onnxruntime-genai==0.18.0"
fi
"$VPY" - <<'PY'
import importlib.metadata as m
import onnxruntime_genai as og
import onnxruntime_genai.models.builder  # noqa: F401  (the model builder imports torch, transformers, onnx-ir)
assert m.version("onnxruntime-genai") == "0.18.0", m.version("onnxruntime-genai")
print("onnxruntime-genai", m.version("onnxruntime-genai"), "| onnxruntime", m.version("onnxruntime"),
      "| torch", m.version("torch"), "| transformers", m.version("transformers"))
PY
