#!/usr/bin/env python3
"""The table of docs/prompts.md from a scripts/prompt_ablation.sh run: held-out PLCC / SROCC / KROCC
of each prompt setting (and seed, when runs with SEED=S exist), overall and by anatomy, as markdown
(stdout) and WORK/ablation.json.

usage: prompt_ablation.py WORK
"""
import json
import sys
from pathlib import Path

import numpy as np

SETTINGS = [
    ("none", "no prompt (s = 0)"),
    ("hand", "hand prompt"),
    ("learned", "learned prompt (16 vectors)"),
    ("anatomy", "learned + anatomy"),
]


def main():
    work = Path(sys.argv[1])
    rows, anatomies = [], []
    seeds = sorted({0} | {int(p.name.split("-seed")[1].split(".")[0]) for p in work.glob("*-seed*.eval.json")})
    for seed in seeds:
        for key, name in SETTINGS:
            path = work / (f"{key}.eval.json" if seed == 0 else f"{key}-seed{seed}.eval.json")
            if not path.is_file():
                continue
            ev = json.loads(path.read_text())
            by = {r["anatomy"]: r for r in ev.get("by_anatomy") or []}
            anatomies += [a for a in by if a not in anatomies]
            rows.append((f"{key}-seed{seed}", f"{name}, seed {seed}", ev["metrics"], by))
    if not rows:
        sys.exit(f"no WORK/<setting>.eval.json in {work}")
    json.dump({k: {"metrics": m, "by_anatomy": b} for k, _, m, b in rows}, open(work / "ablation.json", "w"), indent=1)
    n = rows[0][2]["n"]
    print(f"| setting | PLCC | SROCC | KROCC | " + " | ".join(f"SROCC {a}" for a in anatomies) + " |")
    print("|---|---|---|---|" + "---|" * len(anatomies))
    for _, name, m, by in rows:
        cells = [f"{m['plcc']:.3f}", f"{m['srocc']:.3f}", f"{m['krocc']:.3f}"]
        cells += [f"{by[a]['srocc']:.3f} ({by[a]['n']})" if a in by else "" for a in anatomies]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if len(seeds) > 1:
        print("\n| setting | seeds | PLCC mean (range) | SROCC mean (range) | KROCC mean (range) |")
        print("|---|---|---|---|---|")
        for key, name in SETTINGS:
            ms = [m for k, _, m, _ in rows if k.rsplit("-seed", 1)[0] == key]
            if not ms:
                continue
            cell = lambda f: f"{np.mean([m[f] for m in ms]):.3f} ({min(m[f] for m in ms):.3f}-{max(m[f] for m in ms):.3f})"
            print(f"| {name} | {len(ms)} | {cell('plcc')} | {cell('srocc')} | {cell('krocc')} |")
    print(f"\n{n} held-out images; by anatomy: SROCC (images).")


if __name__ == "__main__":
    main()
