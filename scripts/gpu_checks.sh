#!/usr/bin/env bash
# Every GPU measurement in one unattended command (a few minutes on one H100-class GPU). The figures, with the
# device, torch version and date, are appended to docs/BENCHMARKS.md (or to $OUT_MD). Random weights where the
# real files are absent: speed does not depend on their values, and every table says which weights it used.
#   bash scripts/gpu_checks.sh                 # uses .venv/bin/python if present, else $PYTHON or python3
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT_MD=${OUT_MD:-docs/BENCHMARKS.md}
if ! "$PY" -c "import render2style" 2>/dev/null; then   # a plain checkout: import the folder as the package
  mkdir -p /tmp/r2s_pkg && ln -sfn "$PWD" /tmp/r2s_pkg/render2style
  export PYTHONPATH=/tmp/r2s_pkg${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" -c "import sys, torch; torch.cuda.is_available() or sys.exit('error: no CUDA device visible to torch ' + torch.__version__ + '; run this on a GPU machine'); print('device:', torch.cuda.get_device_name())"
{ echo; echo "## GPU checks ($(date -u +%Y-%m-%d), $("$PY" -c 'import torch; print(torch.cuda.get_device_name(), "torch", torch.__version__)'))"; echo; } >> "$OUT_MD"
# encoding (256->1024, fp32/bf16 throughput and batch-1 latency) and training steps
"$PY" -m render2style.scripts.benchmark --configs demo,full --markdown "$OUT_MD"
"$PY" -m render2style.scripts.benchmark_training --configs demo,full --dtypes fp32,bf16 --markdown "$OUT_MD"
# the teacher at the paper's settings on a random 1024² generator (target <= 60 s/image)
"$PY" -m render2style.scripts.benchmark_teacher --configs paper --random_perceptual --out "$OUT_MD"
# teacher quality per step, demo generator on the GPU (closed loop)
"$PY" -m render2style.scripts.benchmark_teacher_quality --n 8 --device cuda --out_md /tmp/r2s_quality.md
cat /tmp/r2s_quality.md >> "$OUT_MD"
