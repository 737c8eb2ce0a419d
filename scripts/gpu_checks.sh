#!/usr/bin/env bash
# Every GPU measurement and check in one unattended command, meant to finish within 8 minutes on one H100-class
# GPU. Appends every figure, with the device name, torch and CUDA versions and the date, to docs/BENCHMARKS.md (or
# to $OUT_MD). Random weights where the real files are absent: speed does not depend on their values, and every
# table says which weights it used. Each piece runs under its own time limit; a piece that fails, runs out of
# time or needs something missing is reported as skipped (in the terminal and in $OUT_MD), never fatal.
#   bash scripts/gpu_checks.sh                 # uses .venv/bin/python if present, else $PYTHON or python3
# Pieces: the CUDA tests (pytest -k cuda); encode 256->1024 batch-1 latency and batch-64 throughput, fp32 and
# bf16, eager / compiled / CUDA-graphed, each compared with fp32 eager; the training step (full config); the
# teacher's seconds per image at the paper's settings on one 1024² image (random perceptual nets).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT_MD=${OUT_MD:-docs/BENCHMARKS.md}
if ! "$PY" -c "import render2style" 2>/dev/null; then   # a plain checkout: import the folder as the package
  mkdir -p /tmp/r2s_pkg && ln -sfn "$PWD" /tmp/r2s_pkg/render2style
  export PYTHONPATH=/tmp/r2s_pkg${PYTHONPATH:+:$PYTHONPATH}
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_checks: no CUDA device visible to torch ($("$PY" -c 'import torch; print(torch.__version__)' 2>&1 | tail -1)); nothing measured, $OUT_MD unchanged. Run this on a GPU machine." >&2
  exit 1
fi
SKIPPED=()
piece() {  # piece NAME SECONDS COMMAND...: run with a time limit; a failure is recorded as a skip
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then
    SKIPPED+=("$name ($([ $rc -eq 124 ] && echo "over ${limit}s" || echo "exit $rc"))")
    echo "gpu_checks: $name did not finish (see above); skipped" >&2
  fi
}
{ echo; echo "## GPU checks ($(date -u '+%Y-%m-%d %H:%M UTC'), $("$PY" -c 'import torch; print(torch.cuda.get_device_name(), "- torch", torch.__version__, "- CUDA", torch.version.cuda)'))"; echo; } >> "$OUT_MD"
piece "CUDA tests" 60 "$PY" -m pytest -q -k cuda tests
for mode in eager compiled graphed; do   # one piece per mode: a slow compile costs its own rows only
  piece "encode 256->1024, $mode" $([ $mode = eager ] && echo 60 || echo 100) "$PY" -m render2style.scripts.benchmark \
    --configs full --dtypes fp32,bf16 --modes $([ $mode = eager ] && echo eager || echo eager,$mode) \
    --batch_size 64 --iters 5 --warmup 3 --teacher none --markdown "$OUT_MD"
done
piece "training step" 60 "$PY" -m render2style.scripts.benchmark_training --configs full --dtypes fp32,bf16 \
  --steps 5 --warmup 2 --in_process --markdown "$OUT_MD"
piece "teacher, paper settings, one 1024² image" 100 "$PY" -m render2style.scripts.benchmark_teacher \
  --configs paper --random_perceptual --repeats 1 --out "$OUT_MD"
if [ ${#SKIPPED[@]} -gt 0 ]; then
  { echo; echo "Skipped or failed: ${SKIPPED[*]}."; } >> "$OUT_MD"
  printf 'gpu_checks: skipped or failed: %s\n' "${SKIPPED[@]}" >&2
fi
echo "gpu_checks: figures appended to $OUT_MD"
