#!/usr/bin/env bash
# Create .venv (if missing) and install render2style with the given extras, e.g. `scripts/setup_env.sh test,align,onnx,video`.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
.venv/bin/pip install -q -e "$spec"
