#!/usr/bin/env bash
# Pointing game of the quality maps on held-out localized degradations (docs/quality-maps.md).
# usage: scripts/pointing_game.sh [MODEL] [OUT]   (default models/default, pointing-game)
# Simulates COUNT (default 210) localized slices from the held-out real slices
# (scripts/heldout_slices.py, 5 slices) and procedural phantoms (twice in the source cycle, so that 7
# sources against 3 cycled kinds give every source every kind) with seed 13 and the test split
# (training uses --seed 1, the train split), maps them with `ldctq map --method all` and scores hits
# into OUT/pointing_game.md and OUT/pointing_game.json. The simulated set is reused when present, so
# a rerun for another MODEL only maps and scores. About 5 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/default}
OUT=${2:-pointing-game}
COUNT=${COUNT:-210}
LDCTQ=${LDCTQ:-target/debug/ldctq}
PY=${PYTHON:-.venv/bin/python}
if [ ! -f "$OUT/sim/meta.json" ]; then
  "$PY" scripts/heldout_slices.py "$OUT/heldout" >/dev/null
  "$LDCTQ" simulate --localized --out "$OUT/sim" --sources "$OUT/heldout,phantom,phantom" \
    --count "$COUNT" --size 256 --seed 13 --split test
fi
rm -rf "$OUT/maps"
"$LDCTQ" map --model "$MODEL" --out "$OUT/maps" --method all "$OUT/sim/image" >/dev/null
"$PY" scripts/pointing_game.py "$OUT/sim" "$OUT/maps" "$OUT"
