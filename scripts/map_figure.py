#!/usr/bin/env python3
"""The README's quality-map figure: a localized degradation (slice with its mask outlined) beside the
`ldctq map` overlays of each method, side by side in one PNG.

usage: map_figure.py SIM MAPS STEM OUT.png
  SIM: an `ldctq simulate --localized` folder; MAPS: `ldctq map --method all SIM/image` output;
  STEM: the image (e.g. 0006).
"""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

METHODS = ["intrinsic", "gradient", "occlusion", "smoothing"]


def main():
    sim, maps, stem, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    entry = next(e for e in json.loads((sim / "meta.json").read_text()) if Path(e["file"]).stem == stem)
    local = entry["localized"]
    panels = [Image.open(maps / f"{stem}.{m}.png").convert("RGB") for m in METHODS]
    h = panels[0].height
    # The slice in [0, 1] at the maps' plot size, the mask's outline in red.
    image = np.asarray(Image.open(sim / "image" / entry["file"]), dtype=np.float64)
    mask = np.asarray(Image.open(sim / local["mask"])) > 0
    side = 512
    gray = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC)
    edge = mask & ~ndimage.binary_erosion(mask)
    edge = np.asarray(Image.fromarray(edge.astype(np.uint8) * 255).resize((side, side), Image.NEAREST)) > 0
    rgb = np.stack([np.asarray(gray)] * 3, axis=-1)
    rgb[ndimage.binary_dilation(edge, iterations=1)] = (230, 40, 40)
    left = Image.new("RGB", (side + 20, h), "white")
    left.paste(Image.fromarray(rgb), (10, h - side - 20))
    strength = {"noise": "dose", "streaks": "views", "blur": "sigma"}[local["kind"]]
    ImageDraw.Draw(left).text(
        (10, 10), f"{stem}: local {local['kind']} ({strength} {local[strength]:.3g}), mask in red",
        fill="black",
        font=ImageFont.load_default(size=18),
    )
    figure = Image.new("RGB", (left.width + sum(p.width for p in panels), h), "white")
    figure.paste(left, (0, 0))
    x = left.width
    for p in panels:
        figure.paste(p, (x, 0))
        x += p.width
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(out, optimize=True)
    print(f"wrote {out} ({figure.width} x {figure.height})")


if __name__ == "__main__":
    main()
