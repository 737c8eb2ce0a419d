#!/usr/bin/env bash
# Create .venv (if missing) and install render2style with the given extras, e.g. `scripts/setup_env.sh test,align,onnx,video`.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  # PyPI's torch is a CUDA build: the environment takes about 6.5 GB, and pip needs room to unpack it
  need_gb=8
  free_gb=$(( $(df -Pk . | awk 'NR == 2 {print $4}') / 1048576 ))
  if [ "$free_gb" -lt "$need_gb" ]; then
    echo "setup_env.sh: only ${free_gb} GB free on $(df -P . | awk 'NR == 2 {print $6}') for $(pwd)/.venv;" \
         "installing torch and the extras needs about ${need_gb} GB" >&2
    exit 1
  fi
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
.venv/bin/pip install -q -e "$spec"
