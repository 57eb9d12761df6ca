"""The pointing game's scoring (scripts/pointing_game.py): hits, the exact random baseline and the
image-gradient baseline."""

import importlib.util

import numpy as np
import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("pointing_game", REPO / "scripts" / "pointing_game.py")
pg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pg)


def single_pixel_mask(shape=(64, 64), at=(32, 32)):
    mask = np.zeros(shape, bool)
    mask[at] = True
    return mask


def test_a_hit_is_within_15_pixels_of_the_nearest_mask_pixel():
    mask = single_pixel_mask()
    mask[32, 40] = True
    d = pg.distance_to_mask(mask)
    assert pg.is_hit((32, 32), d) and pg.is_hit((32, 55), d)  # 15 px from (32, 40)
    assert not pg.is_hit((32, 56), d)  # 16 px
    assert pg.is_hit((41, 52), d) and not pg.is_hit((43, 52), d)  # 15.0 and 16.3 px from (32, 40)
    assert not pg.is_hit((32, 16), d)  # 16 px from (32, 32)
    with pytest.raises(ValueError):
        pg.distance_to_mask(np.zeros((8, 8), bool))


def test_the_random_baseline_is_the_share_of_pixels_within_15_pixels():
    # 709 lattice points with x^2 + y^2 <= 225.
    d = pg.distance_to_mask(single_pixel_mask())
    assert pg.random_hit_rate(d) == 709 / 64**2
    assert pg.random_hit_rate(pg.distance_to_mask(np.ones((8, 8), bool))) == 1.0


def test_maps_point_at_their_maximum_and_the_image_gradient_at_an_edge():
    m = np.zeros((64, 64))
    m[10, 50] = 2.0
    m[40, 5] = 2.0
    assert pg.worst_point(m) == (10, 50)  # the first maximum
    with pytest.raises(ValueError):
        pg.worst_point(np.full((4, 4), np.nan))
    image = np.zeros((64, 64))
    image[32:, 40:] = 1.0  # an edge between columns 39 and 40 in the lower half
    row, col = pg.worst_point(pg.image_gradient_map(image))
    assert col in (39, 40) and row >= 32
    mask = np.zeros((64, 64), bool)
    mask[40:, 36:44] = True
    hits = pg.score_image(image, mask, {"intrinsic": m, "gradient": mask * 1.0})
    assert hits["intrinsic"] is False and hits["gradient"] is True and hits["image-gradient"] is True
    assert 0 < hits["random"] < 1
    rows = [{"kind": "blur", "hits": hits}, {"kind": "noise", "hits": dict(hits, intrinsic=True)}]
    summary = pg.summarise(rows)
    assert list(summary) == ["blur", "noise", "overall"]
    assert summary["overall"]["n"] == 2 and summary["overall"]["intrinsic"] == 0.5
