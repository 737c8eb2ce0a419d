#!/usr/bin/env bash
# Fresh machine -> the whole render2style pipeline on the embedded demo world (CPU, a few minutes):
# demo renders -> Garbin et al. teacher targets -> encoder training -> r2s-encode with style-mixing variants
# -> evaluation of the amortization gap (encoder vs teacher). Everything lands in experiments/demo.
# The demo shows the mechanics, not photorealism (seeded 64x64 generator, procedural renders).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh align
exp=experiments/demo
.venv/bin/r2s-train-encoder --dataset renders --exp_dir "$exp" "$@"
.venv/bin/r2s-encode --checkpoint "$exp/checkpoints/best_model.pt" --input "$exp/demo_data/renders" \
  --out "$exp/encoded" --n_variants 3 --save_grid --workers 0
.venv/bin/r2s-evaluate --outputs "$exp/encoded" --targets "$exp/demo_data/targets" \
  --out "$exp/eval" --dlib false
echo "demo done: checkpoints in $exp/checkpoints, images and codes in $exp/encoded, metrics in $exp/eval," \
     "curves: .venv/bin/tensorboard --logdir $exp/logs"
