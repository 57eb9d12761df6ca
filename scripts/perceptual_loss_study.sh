#!/usr/bin/env bash
# The perceptual-loss study (docs/perceptual-loss.md): one small CNN denoiser trained on simulated
# pairs (low dose -> noise-free full dose) with MSE alone and with MSE + lambda (4 - score) of MODEL,
# evaluated on held-out real slices (examples/perceptual_loss_study.rs).
#  - training pairs: procedural phantoms and data_store's 693_UNCI.dcm (the default model's training
#    sources), 96 images at 128 x 128 (the default model's input size), doses 0.1 / 0.05 / 0.025;
#  - held-out pairs: the slices of scripts/heldout_slices.py (CT_small, J2K_pixelrep_mismatch,
#    explicit_VR-UN, eCT_Supplemental's two frames), 4 crops each at the same doses (60 images).
# Writes OUT/results.md (the table), OUT/results.json and OUT/crops.png; the simulated sets are kept and
# reused. Extra arguments go to the example (--lambdas, --steps, --batch, --lr, --width, --seed).
# usage: scripts/perceptual_loss_study.sh MODEL OUT [EXAMPLE ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?model folder}
OUT=${2:?output folder}
shift 2
PY=${PYTHON:-.venv/bin/python}
export VIRTUAL_ENV=$PWD/.venv PATH=$PWD/.venv/bin:$PATH LIBTORCH_USE_PYTORCH=1
cargo build --quiet --bin ldctq --example perceptual_loss_study
LDCTQ=target/debug/ldctq
DS=$("$PY" -c 'import data_store, os; print(os.path.join(os.path.dirname(data_store.__file__), "data"))')
SIM=(--size 128 --doses 0.1,0.05,0.025 --views 720)
mkdir -p "$OUT"
[ -d "$OUT/train" ] || "$LDCTQ" simulate --out "$OUT/train" --sources "phantom,$DS/693_UNCI.dcm" \
  --count 96 --seed 12 --split train "${SIM[@]}"
[ -d "$OUT/heldout" ] || "$PY" scripts/heldout_slices.py "$OUT/heldout" > /dev/null
[ -d "$OUT/test" ] || "$LDCTQ" simulate --out "$OUT/test" --sources "$OUT/heldout" --series --count 4 \
  --seed 77 --split test "${SIM[@]}"
target/debug/examples/perceptual_loss_study --model "$MODEL" --train "$OUT/train" --test "$OUT/test" \
  --out "$OUT" "$@"
