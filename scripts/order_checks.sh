#!/usr/bin/env bash
# Held-out checks of a model as an optimisation target (issue 12's figures), on real slices it never
# trained on (scripts/heldout_slices.py: CT_small, J2K_pixelrep_mismatch, explicit_VR-UN and the two
# frames of eCT_Supplemental), simulated as dose series (5 slices x 4 crops x doses 1 .. 0.05):
#  1. dose ranking: Spearman of score vs dose within each series (mean, min; the series under 0.9);
#  2. blur: the full-dose scan vs its Gaussian blur, sigma 0.5 .. 3 (fraction above sigma 1.5, the
#     slices that lost to it; curve);
#  3. denoisers on the 10 % dose scans: 3 x 3 box, 3 x 3 median, Gaussian sigma 1 vs input and reference;
#  4. SROCC on the demo's held-out simulated set.
# usage: scripts/order_checks.sh MODEL OUT   (LDCTQ: the ldctq binary, default target/debug/ldctq)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?model folder}
OUT=${2:?output folder}
LDCTQ=${LDCTQ:-target/debug/ldctq}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
[ -d "$OUT/heldout" ] || "$PY" scripts/heldout_slices.py "$OUT/heldout" > /dev/null 2>&1
[ -d "$OUT/series" ] || "$LDCTQ" simulate --out "$OUT/series" --sources "$OUT/heldout" --series --count 4 \
  --doses 1,0.5,0.25,0.1,0.05 --views 720 --size 256 --seed 77 --split test 2> /dev/null
[ -d "$OUT/demo-set" ] || "$LDCTQ" simulate --out "$OUT/demo-set" --count 60 --size 256 \
  --doses 1,0.5,0.25,0.1,0.05 --views 720 --seed 20261125 --split test 2> /dev/null
rm -rf "$OUT/bench"
"$LDCTQ" bench --model "$MODEL" --data "$OUT/series" --out "$OUT/bench" --bootstrap 0 --window abdomen \
  --denoiser 'g0.5=gaussian:{"sigma":0.5}' --denoiser 'g1=gaussian:{"sigma":1}' \
  --denoiser 'g1.5=gaussian:{"sigma":1.5}' --denoiser 'g2=gaussian:{"sigma":2}' \
  --denoiser 'g3=gaussian:{"sigma":3}' --denoiser 'box3=box:{"size":3}' --denoiser 'median3=median:{"size":3}' \
  > "$OUT/bench.log" 2>&1
"$LDCTQ" eval --model "$MODEL" --data "$OUT/demo-set" > "$OUT/eval.txt" 2>&1
"$PY" - "$OUT" <<'PY'
import csv, json, sys
from collections import Counter
from pathlib import Path
from scipy.stats import spearmanr
out = Path(sys.argv[1])
meta = {m["file"]: m for m in json.loads((out / "series/meta.json").read_text())}
rows = list(csv.DictReader(open(out / "bench/per_image.csv")))
for r in rows:
    r["series"] = meta[Path(r["file"]).name]["series"]
s = lambda r, m: float(r[f"score_{m}"])
series = {}
for r in rows:
    series.setdefault(r["series"], []).append(r)
rhos = [spearmanr([float(r["dose"]) for r in g], [s(r, "input") for r in g])[0] for g in series.values()]
source = lambda r: Path(meta[Path(r["file"]).name]["source"]).name.split("#")[0]
weak = sorted(f"{source(g[0])} {rho:.2f}" for g, rho in zip(series.values(), rhos) if rho < 0.9 - 1e-9)
full = [r for r in rows if float(r["dose"]) == 1.0]
tenth = [r for r in rows if float(r["dose"]) == 0.1]
mean = lambda rs, m: sum(s(r, m) for r in rs) / len(rs)
curve = [("0", mean(full, "input"))] + [(g[1:], mean(full, g)) for g in ["g0.5", "g1", "g1.5", "g2", "g3"]]
lost = Counter(source(r) for r in full if s(r, "input") <= s(r, "g1.5"))  # slices that lost to their blur
above = 1 - sum(lost.values()) / len(full)
falling = all(a[1] > b[1] for a, b in zip(curve[2:], curve[3:]))
srocc = next((l for l in (out / "eval.txt").read_text().splitlines() if l.startswith("SROCC")), "?")
res = {
    "dose_spearman_mean": sum(rhos) / len(rhos), "dose_spearman_min": min(rhos), "series_below_0.9": weak,
    "full_above_blur1.5": above, "blur_lost_by_slice": lost, "blur_curve": curve, "blur_falls_from_1": falling,
    "dose0.1": {m: mean(tenth, m) for m in ["input", "box3", "median3", "g1", "reference"]},
    "demo_eval": srocc.strip(),
}
(out / "order_checks.json").write_text(json.dumps(res, indent=1))
print(f"| check | value | target |\n|---|---|---|")
print(f"| dose series Spearman, mean (min) over {len(rhos)} series | {res['dose_spearman_mean']:.3f} ({min(rhos):.3f}) | >= 0.95 (>= 0.9) |")
print(f"| series below 0.9 | {', '.join(weak) or 'none'} | |")
print(f"| full dose above its blur sigma 1.5 | {above:.0%} of {len(full)} | >= 95 % |")
print(f"| slices whose full dose lost to its blur | {', '.join(f'{k} x{v}' for k, v in sorted(lost.items())) or 'none'} | |")
print(f"| blur curve sigma 0/0.5/1/1.5/2/3 | {' / '.join(f'{v:.2f}' for _, v in curve)} | falling from 1: {falling} |")
d = res["dose0.1"]
print(f"| 10 % dose: input / box3 / median3 / gauss1 / reference | {d['input']:.2f} / {d['box3']:.2f} / {d['median3']:.2f} / {d['g1']:.2f} / {d['reference']:.2f} | input < denoised < reference |")
print(f"| demo set | {res['demo_eval']} | SROCC >= 0.92 |")
PY
