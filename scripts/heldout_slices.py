#!/usr/bin/env python3
"""Writes the real CT slices that the default model never trains on, as plain DICOM in HU
(uncompressed, RescaleSlope 1, RescaleIntercept 0, PixelSpacing kept), for the held-out checks
(scripts/order_checks.sh): pydicom's CT_small.dcm (thorax), J2K_pixelrep_mismatch.dcm (head),
explicit_VR-UN.dcm (abdomen, pancreas) and the two frames of eCT_Supplemental.dcm. (Training uses
data_store's 693_UNCI.dcm and procedural phantoms.)

usage: heldout_slices.py OUT_DIR
"""
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

HELD_OUT = ["CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "explicit_VR-UN.dcm", "eCT_Supplemental.dcm"]
# BodyPartExamined written into the copies (ldctq simulate reads it as the slice's anatomy); the
# originals carry it only for the head and pancreas files; eCT_Supplemental's anatomy is not known.
BODY_PART = {"CT_small.dcm": "CHEST", "J2K_pixelrep_mismatch.dcm": "HEAD", "explicit_VR-UN.dcm": "PANCREAS"}


def hu_frames(ds):
    """(frames, H, W) float HU and the pixel spacing in mm."""
    a = ds.pixel_array.astype(np.float64)
    if a.ndim == 2:
        a = a[None]
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    spacing = ds.get("PixelSpacing")
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:  # enhanced CT: rescale and spacing in the functional groups
        g = shared[0]
        if "PixelValueTransformationSequence" in g:
            t = g.PixelValueTransformationSequence[0]
            slope, intercept = float(t.RescaleSlope), float(t.RescaleIntercept)
        if "PixelMeasuresSequence" in g:
            spacing = g.PixelMeasuresSequence[0].PixelSpacing
    return a * slope + intercept, float(spacing[0]) if spacing else 0.7


def write(path, hu, spacing, body_part=None):
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[path.name])
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.PixelSpacing = [spacing, spacing]
    if body_part:
        ds.BodyPartExamined = body_part
    ds.PixelData = np.clip(np.round(hu), -32768, 32767).astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name in HELD_OUT:
        frames, spacing = hu_frames(pydicom.dcmread(get_testdata_file(name)))
        for i, hu in enumerate(frames):
            stem = Path(name).stem + (f"_{i}" if len(frames) > 1 else "")
            write(out / f"{stem}.dcm", hu, spacing, BODY_PART.get(name))
            print(f"{stem}.dcm: {hu.shape[0]} x {hu.shape[1]}, {spacing:.3f} mm, HU {hu.min():.0f} .. {hu.max():.0f}")


if __name__ == "__main__":
    main()
