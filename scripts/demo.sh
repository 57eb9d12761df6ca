#!/usr/bin/env bash
# The main job, run by `make demo`: simulate a held-out low-dose CT set (seed unseen in training),
# score it with the shipped default model, print the scores by dose with the challenge metrics, and
# benchmark a few denoisers (built-ins and a C plugin) by the score.
set -euo pipefail
cd "$(dirname "$0")/.."
LDCTQ=${LDCTQ:-target/debug/ldctq}
MODEL=${MODEL:-models/default}
OUT=${DEMO_OUT:-out/demo}
rm -rf "$OUT" && mkdir -p "$OUT"

echo "== 1. Simulating a held-out low-dose set (procedural phantoms and real CT slices) =="
"$LDCTQ" simulate --out "$OUT/sim" --count 60 --size 256 --doses 1,0.5,0.25,0.1,0.05 --views 720 \
  --seed 20261125 --split test

echo
echo "== 2. Scoring it with $MODEL (trained on simulated data only) =="
"$LDCTQ" score --model "$MODEL" --format csv "$OUT/sim/image" > "$OUT/scores.csv"
head -n 6 "$OUT/scores.csv"
echo "... ($(($(wc -l < "$OUT/scores.csv") - 1)) images, all in $OUT/scores.csv)"

echo
echo "== 3. Scores by dose, and agreement with the simulated labels =="
"$LDCTQ" eval --model "$MODEL" --data "$OUT/sim" --by dose

echo
echo "== 3b. The score as an optimisation target: blur curve of the references, gradient ascent vs PSNR =="
"$LDCTQ" audit --model "$MODEL" --data "$OUT/sim" --out "$OUT/audit" --limit 10 --steps 5 2>&1 | grep -v "^$"

echo
echo "== 4. A real CT slice (pydicom's CT_small.dcm, HU windowed as the model was trained) =="
"$LDCTQ" score --model "$MODEL" .venv/lib/python3.*/site-packages/pydicom/data/test_files/CT_small.dcm

echo
echo "== 4b. Where quality is lost: quality maps of a 5 % dose slice and its full-dose reference =="
LOW=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(next(r["file"] for r in m if r["dose"]==0.05))' "$OUT/sim/meta.json")
mkdir -p "$OUT/map-in" && cp "$OUT/sim/image/$LOW" "$OUT/map-in/dose5.tif" && cp "$OUT/sim/reference/$LOW" "$OUT/map-in/full.tif"
"$LDCTQ" map --model "$MODEL" --out "$OUT/maps" --method all "$OUT/map-in/dose5.tif" "$OUT/map-in/full.tif"
echo "(npy maps and PNG overlays in $OUT/maps)"

echo
echo "== 5. Benchmarking denoisers without looking at the references (then PSNR/SSIM/VIF against them) =="
PLUGIN=()
if command -v cc > /dev/null; then
  cc -std=c99 -shared -fPIC -O2 -I include -I examples/plugins examples/plugins/gaussian.c \
    -o "$OUT/libgaussian.so" -lm
  PLUGIN=(--denoiser "c_gauss=$OUT/libgaussian.so:{\"sigma\":1.2}")
fi
"$LDCTQ" bench --model "$MODEL" --data "$OUT/sim" --out "$OUT/bench" --bootstrap 500 --window abdomen \
  --denoiser identity --denoiser median --denoiser 'gaussian:{"sigma":0.8}' "${PLUGIN[@]}" --maps
echo "(reports and plots in $OUT/bench: summary.md, per_image.csv, scores.png, score_vs_dose.png, quality maps"
echo " maps_intrinsic.png / mean_map_intrinsic.png, ...)"
