"""Tiling engine: layout, blending without seams, padding for small rasters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from farmseg.geoio.raster import RasterSource
from farmseg.jobs import run_job
from farmseg.models.bundle import load_bundle
from farmseg.pipeline.inference import TileSettings, infer_job
from farmseg.pipeline.tiling import blend_profile, pad_to_tile, tile_starts
from tests.conftest import SAMPLE, write_crop


class ConstantPredictor:
    """Returns the same class probabilities everywhere."""

    name = "constant"

    def __init__(self, probs=(0.3, 0.6, 0.1)) -> None:
        self.probs = np.asarray(probs, np.float32)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        n, _, h, w = batch.shape
        return np.broadcast_to(self.probs[None, :, None, None], (n, 3, h, w)).copy()


class RampPredictor:
    """Field probability that depends on the input pixel values only (no tile context)."""

    name = "ramp"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        field = 1 / (1 + np.exp(-batch[:, 0]))
        return np.stack([1 - field, field, np.zeros_like(field)], axis=1)


@pytest.mark.parametrize("length,tile,overlap", [(1, 64, 16), (64, 64, 16), (200, 64, 16),
                                                 (1000, 512, 64)])
def test_tiles_cover_the_raster(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + tile] = True
    assert covered.all()
    assert starts[-1] + tile >= length and all(s >= 0 for s in starts)


def test_blend_weights_are_smooth_and_positive():
    w = blend_profile(64, 16)
    assert w.min() > 0 and w.max() == 1
    assert np.all(np.diff(w[:16]) > 0)


def test_pad_handles_one_pixel():
    assert pad_to_tile(np.ones((3, 1, 1), np.float32), 32).shape == (3, 32, 32)


def _infer(path: Path, predictor, tile=64, overlap=16, tmp=None) -> np.ndarray:
    bundle = load_bundle("default")
    with RasterSource(path) as src:
        out = run_job(infer_job(src, bundle, predictor, TileSettings(tile, overlap, 3),
                                tmp / "p.tif", warn=lambda _: None))
    with rasterio.open(out) as probs:
        return probs.read()


def test_constant_model_gives_constant_result_across_tile_borders(tmp_path):
    crop = write_crop(SAMPLE, tmp_path / "c.tif", 0, 0, 200, 150)
    probs = _infer(crop, ConstantPredictor(), tmp=tmp_path)
    assert probs.shape == (3, 150, 200)
    assert np.all(probs[1] == probs[1, 0, 0]) and abs(probs[1, 0, 0] - 0.6 * 255) <= 1


def test_pixelwise_model_has_no_seams(tmp_path):
    """A model without spatial context must give the same value whatever the tiling."""
    crop = write_crop(SAMPLE, tmp_path / "c.tif", 100, 100, 230, 170)
    small = _infer(crop, RampPredictor(), tile=64, overlap=16, tmp=tmp_path)
    large = _infer(crop, RampPredictor(), tile=256, overlap=0, tmp=tmp_path)
    assert np.abs(small.astype(int) - large.astype(int)).max() <= 1


def test_tiles_of_very_fine_rasters_stay_within_the_memory_bound():
    from farmseg.pipeline.inference import MAX_RASTER_TILE, raster_tile, tile_for_scale

    assert tile_for_scale(TileSettings(512, 64, 2), 2.0) == TileSettings(512, 64, 2)
    drone = tile_for_scale(TileSettings(512, 64, 2), 10.0)  # 10 cm pixels, 1 m model
    assert drone.tile % 32 == 0 and raster_tile(drone.tile, 10.0) <= MAX_RASTER_TILE
    assert drone.checked() == drone and 0 < drone.overlap < drone.tile // 2
