#!/usr/bin/env python3
"""Pointing game of quality maps on localized degradations (docs/quality-maps.md).

A map scores a hit on an image when its arg-max pixel lies within RADIUS (15) pixels of the
degradation's mask (Euclidean distance between pixel centres to the nearest mask pixel). Scored per
degradation kind and overall for the maps of `ldctq map` (intrinsic, gradient, occlusion, smoothing), a plain image-gradient
baseline (Sobel magnitude of the image, smoothed like the gradient map, no model) and a uniform random
point, whose expected hit rate is, exactly, the fraction of the image within RADIUS of the mask.

usage: pointing_game.py SIM MAPS OUT
  SIM: an `ldctq simulate --localized` folder (meta.json, image/, mask/); MAPS: `ldctq map --method
  all SIM/image` output (NAME.METHOD.npy; the methods found are scored); writes OUT/pointing_game.md, .json.
"""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

RADIUS = 15.0
MODEL_METHODS = ["intrinsic", "gradient", "occlusion", "smoothing"]
BASELINES = ["image-gradient", "random"]
HEADERS = {"image-gradient": "image gradient (Sobel)", "random": "random (expected)"}


def distance_to_mask(mask):
    """Per pixel, the Euclidean distance (pixels) to the nearest pixel of the boolean `mask` (0 inside)."""
    if not mask.any():
        raise ValueError("empty mask")
    return ndimage.distance_transform_edt(~mask)


def worst_point(quality_map):
    """(row, col) of the map's maximum (maps are high where quality is lost); the first one on ties."""
    if not np.isfinite(quality_map).all():
        raise ValueError("map has NaN or infinite values")
    return np.unravel_index(int(np.argmax(quality_map)), quality_map.shape)


def is_hit(point, distance, radius=RADIUS):
    return bool(distance[point] <= radius)


def random_hit_rate(distance, radius=RADIUS):
    """Expected hits of a uniformly random pixel: the share of pixels within `radius` of the mask."""
    return float((distance <= radius).mean())


def image_gradient_map(image):
    """The baseline map: |Sobel gradient| of the image, smoothed by a Gaussian of (H + W) / 128 pixels
    (the gradient map's smoothing)."""
    image = image.astype(np.float64)
    magnitude = np.hypot(ndimage.sobel(image, axis=0), ndimage.sobel(image, axis=1))
    return ndimage.gaussian_filter(magnitude, sum(image.shape) / 128.0)


def score_image(image, mask, maps):
    """Hits (bool, or the expected rate for `random`) of each method on one image."""
    distance = distance_to_mask(mask)
    hits = {name: is_hit(worst_point(m), distance) for name, m in maps.items()}
    hits["image-gradient"] = is_hit(worst_point(image_gradient_map(image)), distance)
    hits["random"] = random_hit_rate(distance)
    return hits


def summarise(rows):
    """Mean hit rate per method, per kind and overall: {group: {"n": .., method: rate}}."""
    groups = {}
    for row in rows:
        for group in (row["kind"], "overall"):
            groups.setdefault(group, []).append(row["hits"])
    methods = list(rows[0]["hits"])
    return {
        g: {"n": len(hits), **{m: float(np.mean([h[m] for h in hits])) for m in methods}}
        for g, hits in sorted(groups.items(), key=lambda kv: (kv[0] == "overall", kv[0]))
    }


def main():
    sim, maps, out = (Path(a) for a in sys.argv[1:4])
    rows = []
    entries = json.loads((sim / "meta.json").read_text())
    first = Path(entries[0]["file"]).stem
    found = [m for m in MODEL_METHODS if (maps / f"{first}.{m}.npy").is_file()]
    for entry in entries:
        local = entry["localized"]
        stem = Path(entry["file"]).stem
        image = np.asarray(Image.open(sim / "image" / entry["file"]), dtype=np.float64)
        mask = np.asarray(Image.open(sim / local["mask"])) > 0
        model_maps = {m: np.load(maps / f"{stem}.{m}.npy") for m in found}
        for m in model_maps.values():
            assert m.shape == mask.shape == image.shape, (stem, m.shape, mask.shape)
        hits = score_image(image, mask, model_maps)
        rows.append({"file": entry["file"], "source": entry["source"], "kind": local["kind"], "hits": hits})
    summary = summarise(rows)
    out.mkdir(parents=True, exist_ok=True)
    report = {"radius_px": RADIUS, "images": len(rows), "summary": summary, "per_image": rows}
    (out / "pointing_game.json").write_text(json.dumps(report, indent=1))
    lines = [
        f"Pointing game: hit = arg-max of the map within {RADIUS:g} px of the mask; {len(rows)} images.",
        "",
        "| kind | n | " + " | ".join(HEADERS.get(m, m) for m in found + BASELINES) + " |",
        "|---|---|" + "---|" * len(found + BASELINES),
    ]
    for group, s in summary.items():
        cells = " | ".join(f"{100 * s[m]:.1f} %" for m in found + BASELINES)
        lines.append(f"| {'**overall**' if group == 'overall' else group} | {s['n']} | {cells} |")
    (out / "pointing_game.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
