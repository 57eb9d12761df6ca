#!/usr/bin/env python3
"""Measures how ldctq's float preprocessing differs from the Hugging Face SigLIP image processor.

ldctq: window HU to [0,1] in float, bicubic resize with PIL's kernel and antialiasing in float
(torch `interpolate(..., mode="bicubic", antialias=True)`, the op ldctq calls through libtorch),
replicate to RGB, normalize with mean/std 0.5. HF (`SiglipImageProcessor`, slow PIL path as
MedSigLIP's notebooks use it): the windowed slice quantized to uint8 RGB, PIL BICUBIC resize, rescale,
normalize. Prints the max and mean absolute difference of `pixel_values` (range [-1, 1]).

Usage: .venv/bin/python scripts/preprocess_vs_pil.py [DICOM ...]
"""
import os
import sys

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from transformers import SiglipImageProcessor

SIZE = 448
CENTER, WIDTH = -300.0, 1400.0


def default_files():
    import data_store
    from pydicom.data import get_testdata_file
    d = os.path.join(os.path.dirname(data_store.__file__), "data")
    return [get_testdata_file("CT_small.dcm"), os.path.join(d, "693_UNCI.dcm")]


def main():
    files = sys.argv[1:] or default_files()
    proc = SiglipImageProcessor(size={"height": SIZE, "width": SIZE}, resample=3, do_rescale=True,
                                rescale_factor=1 / 255, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    for f in files:
        ds = pydicom.dcmread(f)
        hu = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        unit = np.clip((hu - (CENTER - WIDTH / 2)) / WIDTH, 0, 1).astype(np.float32)
        x = torch.from_numpy(unit)[None, None]
        ours = F.interpolate(x, size=(SIZE, SIZE), mode="bicubic", align_corners=False, antialias=True)
        ours = ((ours.expand(1, 3, SIZE, SIZE) - 0.5) / 0.5)[0].numpy()
        rgb = np.repeat((unit * 255).round().astype(np.uint8)[..., None], 3, axis=2)
        hf = proc(images=rgb, return_tensors="np")["pixel_values"][0]
        d = np.abs(ours - hf)
        print(f"{os.path.basename(f)} {unit.shape[0]}x{unit.shape[1]} -> {SIZE}: max |diff| {d.max():.4f}, "
              f"mean |diff| {d.mean():.5f} (1/255 step in pixel_values = {2 / 255:.4f})")


if __name__ == "__main__":
    main()
