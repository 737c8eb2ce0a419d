#!/usr/bin/env bash
# Set up .venv with the test extras and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test,align,onnx,video
CUDA_VISIBLE_DEVICES="" .venv/bin/python -m pytest tests "$@"
