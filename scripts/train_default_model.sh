#!/usr/bin/env bash
# Reproduces models/default (README, "The default model"): the small backbone from its seed, the
# simulated training set (phantoms and pydicom-data's 693_UNCI.dcm; the held-out slices of
# scripts/heldout_slices.py are not used), and the ranking-loss training with order pairs.
# usage: scripts/train_default_model.sh [OUT] [WORK]   (default OUT models/default, WORK sim-train)
# About 35 minutes on a 2-core CPU (simulation 20, training 15; models/default was trained with
# OMP_NUM_THREADS=1, other thread counts may round differently).
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # the thread count models/default was trained with
cd "$(dirname "$0")/.."
OUT=${1:-models/default}
WORK=${2:-sim-train}
LDCTQ=${LDCTQ:-target/debug/ldctq}
PY=${PYTHON:-.venv/bin/python}
DS=$("$PY" -c 'import pathlib, data_store; print(pathlib.Path(data_store.__file__).parent / "data")' 2>/dev/null ||
  echo .venv/lib/python3.11/site-packages/data_store/data)
"$PY" scripts/make_random_checkpoint.py --preset small --seed 0 --dct-patches --out "$OUT/backbone" --force
[ -f "$WORK/meta.json" ] || "$LDCTQ" simulate --out "$WORK" --sources "phantom,$DS/693_UNCI.dcm,phantom,phantom" \
  --families scan,scan,scan,blur,oversmooth,texture --doses 1,0.5,0.25,0.1,0.05 --views 720,360,180 \
  --count 720 --size 256 --seed 1
"$LDCTQ" train --data "$WORK" --backbone "$OUT/backbone" --out "$OUT" \
  --epochs 40 --batch 8 --accumulation 1 --lr 5e-4 --head-lr 1e-3 --folds 5 --fold 0 --seed 0 \
  --vision full --no-augment --film-hidden 64 --head-hidden 64 --fusion-hidden 8 \
  --order-pairs blur,oversmooth,noise,texture --order-weight 0.5 --order-min-label 3
