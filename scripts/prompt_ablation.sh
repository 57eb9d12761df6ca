#!/usr/bin/env bash
# The prompt ablation of docs/prompts.md: the default model's recipe (scripts/train_default_model.sh:
# backbone, simulated training set, training budget, seed and fold) trained with four prompt settings,
# each evaluated on one held-out simulated set made from slices and phantoms it never saw:
#   none     FiLM strength 0 (the prompt has no effect)
#   hand     the paper's clinical prompt (the default model's setting)
#   learned  16 learned context vectors, initialised from the hand prompt, trained jointly
#   anatomy  learned context shared by all images, an anatomy word appended (abdomen, head)
# usage: [SEED=S] scripts/prompt_ablation.sh [WORK] [SETTINGS]   (default WORK runs/prompts, all
# settings, seed 0; another seed writes WORK/<setting>-seedS, to gauge the seed-to-seed spread)
# Writes WORK/<setting>/ (model folders) and WORK/<setting>.eval.json; with
# OMP_NUM_THREADS=1 about 20 minutes of simulation and 10-15 per setting on a 2-core CPU (run two
# settings at once: `scripts/prompt_ablation.sh WORK none,hand & scripts/prompt_ablation.sh WORK
# learned,anatomy`), then scripts/prompt_ablation.py WORK writes the table.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cd "$(dirname "$0")/.."
WORK=${1:-runs/prompts}
SETTINGS=${2:-none,hand,learned,anatomy}
SEED=${SEED:-0}
LDCTQ=${LDCTQ:-target/debug/ldctq}
PY=${PYTHON:-.venv/bin/python}
DS=$("$PY" -c 'import pathlib, data_store; print(pathlib.Path(data_store.__file__).parent / "data")')
BACKBONE=models/default/backbone
mkdir -p "$WORK"
exec 9>"$WORK/.lock"  # one simulation at a time when two copies run

# The default model's training set (same seed and sources: the same images), with anatomy words:
# the phantoms are abdomen-like, 693_UNCI.dcm is a head.
flock 9
[ -f "$WORK/train/meta.json" ] || "$LDCTQ" simulate --out "$WORK/train" \
  --sources "phantom,$DS/693_UNCI.dcm@head,phantom,phantom" \
  --families scan,scan,scan,blur,oversmooth,texture --doses 1,0.5,0.25,0.1,0.05 --views 720,360,180 \
  --count 720 --size 256 --seed 1
# Held out: pydicom's CT_small (chest), J2K_pixelrep_mismatch (head), explicit_VR-UN (abdomen), the
# two frames of eCT_Supplemental (anatomy unknown), and unseen phantoms (abdomen); test split, seed 2.
[ -d "$WORK/heldout-slices" ] || "$PY" scripts/heldout_slices.py "$WORK/heldout-slices" >/dev/null
[ -f "$WORK/heldout/meta.json" ] || "$LDCTQ" simulate --out "$WORK/heldout" \
  --sources "phantom,$WORK/heldout-slices" --split test \
  --families scan,scan,scan,blur,oversmooth,texture --doses 1,0.5,0.25,0.1,0.05 --views 720,360,180 \
  --count 300 --size 256 --seed 2
flock -u 9

train() {  # the default model's training command; extra options per setting
  local out=$1; shift
  [ -f "$out/train_summary.json" ] && return
  "$LDCTQ" train --data "$WORK/train" --backbone "$BACKBONE" --out "$out" --resume \
    --epochs 40 --batch 8 --accumulation 1 --lr 5e-4 --head-lr 1e-3 --folds 5 --fold 0 --seed "$SEED" \
    --vision full --no-augment --film-hidden 64 --head-hidden 64 --fusion-hidden 8 \
    --order-pairs blur,oversmooth,noise,texture --order-weight 0.5 --order-min-label 3 "$@" \
    >"$out.log" 2>&1 || { tail -5 "$out.log" >&2; return 1; }
}

for setting in ${SETTINGS//,/ }; do
  s=$setting
  [ "$SEED" = 0 ] || s=$setting-seed$SEED
  case $setting in
    none) train "$WORK/$s" --film-strength 0 ;;
    hand) train "$WORK/$s" ;;
    learned) train "$WORK/$s" --learn-prompt 16 ;;
    anatomy) train "$WORK/$s" --learn-prompt 16 --anatomy-prompts ;;
    *) echo "unknown setting $setting" >&2; exit 2 ;;
  esac
  "$LDCTQ" eval --model "$WORK/$s" --data "$WORK/heldout" --format json >"$WORK/$s.eval.json"
  "$PY" -c 'import json, sys; m = json.load(open(sys.argv[2]))["metrics"]
print("{}: PLCC {:.4f} SROCC {:.4f} KROCC {:.4f}".format(sys.argv[1], m["plcc"], m["srocc"], m["krocc"]))' "$s" "$WORK/$s.eval.json"
done
