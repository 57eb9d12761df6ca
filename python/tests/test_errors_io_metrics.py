"""Bad inputs raise the exception of their kind (all under ldctq.LdctqError, and the matching built-in
exception); read_image and the metrics agree with independent implementations."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import FIXTURES, HU_MODEL, UNIT_MODEL

import ldctq
from ldctq import errors

IO = FIXTURES / "io"


@pytest.fixture(scope="module")
def model():
    return ldctq.QualityModel(UNIT_MODEL)


def test_bad_images_raise_invalid_input(model):
    for bad, why in [
        (torch.rand(2, 3, 8, 8), "(N, H, W) or (N, 1, H, W)"),
        (torch.rand(8, 8), "(N, H, W) or (N, 1, H, W)"),
        (torch.rand(0, 8, 8), "(N, H, W) or (N, 1, H, W)"),
        (torch.randint(0, 5, (2, 8, 8)), "floating point"),
        (torch.full((1, 8, 8), float("nan")), "NaN"),
    ]:
        with pytest.raises(errors.InvalidInputError, match=None) as e:
            model.score(bad)
        assert why in str(e.value) and isinstance(e.value, ValueError) and isinstance(e.value, ldctq.LdctqError)
        assert e.value.kind == "InvalidInput"
    with pytest.raises(errors.InvalidInputError):
        model.score(torch.full((1, 8, 8), float("inf")).requires_grad_())
    with pytest.raises(TypeError, match="torch.Tensor"):
        model.score(np.zeros((1, 8, 8), np.float32))


def test_bad_models_and_settings(tmp_path, model):
    with pytest.raises(errors.NotFoundError) as e:
        ldctq.QualityModel(tmp_path / "nothing")
    assert isinstance(e.value, FileNotFoundError) and "nothing" in str(e.value)
    broken = tmp_path / "broken"
    shutil.copytree(UNIT_MODEL, broken)
    (broken / "ldctq.json").write_text("{not json")
    with pytest.raises(errors.ConfigError, match="ldctq.json"):
        ldctq.QualityModel(broken)
    # A head checkpoint lacking a tensor: the checkpoint error names it.
    from safetensors.torch import load_file, save_file

    weights = load_file(UNIT_MODEL / "head.safetensors")
    cfg = json.loads((UNIT_MODEL / "ldctq.json").read_text())
    cfg["backbone"] = str((UNIT_MODEL / cfg["backbone"]).resolve())
    (broken / "ldctq.json").write_text(json.dumps(cfg))
    dropped = sorted(k for k in weights if k.endswith(".bias"))[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, broken / "head.safetensors")
    with pytest.raises(errors.CheckpointError, match=dropped.replace(".", r"\.")):
        ldctq.QualityModel(broken)
    with pytest.raises(errors.InvalidInputError, match="device"):
        ldctq.QualityModel(UNIT_MODEL, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(errors.UnsupportedError, match="CUDA"):
            ldctq.QualityModel(UNIT_MODEL, device="cuda:0")
    with pytest.raises(errors.InvalidInputError, match="dtype"):
        ldctq.QualityModel(UNIT_MODEL, dtype=torch.int32)
    with pytest.raises(errors.InvalidInputError, match="finite"):
        model.film_strength = float("nan")
    with pytest.raises(errors.InvalidInputError, match="reduction"):
        ldctq.QualityLoss(model, reduction="max")
    with pytest.raises(errors.ConfigError, match="ensemble.json"):
        (tmp_path / "ens").mkdir()
        (tmp_path / "ens" / "ensemble.json").write_text('{"format_version": 1, "members": []}')
        ldctq.QualityModel(tmp_path / "ens")


def test_read_image_matches_the_reference_arrays(tmp_path):
    for name in ["f32.tif", "f32_3pages.tif", "u16.tif", "mono1_s12.dcm", "f64_3d.npy", "u8.dcm"]:
        want = np.load(IO / f"{name}.expected.npy").astype(np.float32)
        got = ldctq.read_image(IO / name)
        assert got.dtype == torch.float32 and got.dim() == 3
        np.testing.assert_array_equal(got.numpy(), want.reshape(got.shape), err_msg=name)
    hu = ldctq.read_image(IO / "mono1_s12.dcm")
    unit = ldctq.read_image(IO / "mono1_s12.dcm", "unit", window="abdomen")
    torch.testing.assert_close(unit, ((hu - (50 - 200)) / 400).clamp(0, 1))
    assert ldctq.read_image(IO / "f32.tif", "hu").min() >= -1000  # [0, 1] -> HU in the LDCTIQA window
    with pytest.raises(errors.InvalidInputError, match="HU or in"):
        ldctq.read_image(IO / "f32_2d.npy", "unit")
    torch.testing.assert_close(ldctq.read_image(IO / "f32_2d.npy", "unit", raw_as="unit"), ldctq.read_image(IO / "f32_2d.npy"))
    (tmp_path / "x.bmp").write_bytes(b"BM not an image")
    for bad, cls in [(tmp_path / "x.bmp", errors.ReadError), (IO / "short_pixeldata.dcm", errors.ReadError), (tmp_path / "none.tif", errors.ReadError)]:
        with pytest.raises(cls) as e:
            ldctq.read_image(bad)
        assert str(bad) in str(e.value)
    with pytest.raises(errors.InvalidInputError, match="window"):
        ldctq.read_image(IO / "f32.tif", "hu", window="lung")
    with pytest.raises(errors.InvalidInputError):
        ldctq.read_image(IO / "f32.tif", "hu", window=(0, -5))
    with pytest.raises(errors.InvalidInputError, match="unit"):
        ldctq.read_image(IO / "f32.tif", "kelvin")
    listed = ldctq.list_images(IO)
    assert str(IO / "f32.tif") in listed and str(IO / "mono1_s12.dcm") in listed


def test_hu_model_reads_dicom_in_hu():
    m = ldctq.QualityModel(HU_MODEL)
    frames = m.read(IO / "mono1_s12.dcm")
    torch.testing.assert_close(frames, ldctq.read_image(IO / "mono1_s12.dcm"))


def test_metrics_agree_with_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    label = rng.uniform(0, 4, 50)
    pred = label + rng.normal(0, 0.8, 50)
    pred[:5] = pred[5]  # ties
    p, s, k = stats.pearsonr(pred, label)[0], stats.spearmanr(pred, label)[0], stats.kendalltau(pred, label)[0]
    assert ldctq.metrics.plcc(pred, label) == pytest.approx(p, abs=1e-12)
    assert ldctq.metrics.srocc(torch.tensor(pred), list(label)) == pytest.approx(s, abs=1e-12)
    assert ldctq.metrics.krocc(pred, label) == pytest.approx(k, abs=1e-12)
    assert ldctq.metrics.overall(pred, label) == pytest.approx(abs(p) + abs(s) + abs(k), abs=1e-12)
    r = ldctq.metrics.evaluate(pred, label)
    assert r["n"] == 50 and r["mae"] == pytest.approx(np.abs(pred - label).mean())
    with pytest.raises(errors.MetricError, match="constant"):
        ldctq.metrics.plcc([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(errors.MetricError, match="length"):
        ldctq.metrics.srocc([1.0, 2.0], [1.0, 2.0, 3.0])
