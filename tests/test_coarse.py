"""Coarse rasters (5-10 m pixels) for a finer model: the boundary class survives the resize
back to the raster grid, memory stays bounded, and `default` picks the model for the pixels."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from farmseg.geoio.raster import RasterSource
from farmseg.jobs import drain
from farmseg.models.bundle import bundled_models_dir, default_bundle_path, load_bundle
from farmseg.pipeline.inference import TileSettings, footprint_max, infer_job, to_raster_size
from farmseg.pipeline.segment import SegmentOptions, segment_job

DEFAULT = bundled_models_dir() / "default"


class _EdgeNet:
    """A stand-in network: a boundary line one model pixel wide along the left edge of dark
    areas (as a real network draws it, not centred on the lane's raster pixel), field
    elsewhere."""

    name = "edge"

    def suggested_batch(self, tile: int) -> int:
        return 4

    def predict(self, batch: np.ndarray) -> np.ndarray:
        light = batch.mean(axis=1)
        dark = light < (light.min() + light.max()) / 2
        edge = dark.copy()
        edge[:, :, 1:] &= ~dark[:, :, :-1]
        boundary = edge.astype(np.float32)
        return np.stack([np.zeros_like(boundary), 1.0 - boundary, boundary], axis=1)


def _coarse_raster(path: Path, width: int, height: int, lane: int | None = None,
                   pixel: float = 10.0) -> Path:
    """A uint8 RGB raster of `pixel` m pixels: bright fields, a dark one-pixel lane at
    column `lane`."""
    data = np.full((3, height, width), 200, np.uint8)
    if lane is not None:
        data[:, :, lane] = 20
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3,
                       dtype="uint8", crs="EPSG:32615",
                       transform=from_origin(500000, 4500000, pixel, pixel)) as out:
        out.write(data)
    return path


def test_a_boundary_line_inside_a_coarse_pixel_is_kept():
    probs = np.zeros((3, 40, 40), np.float32)
    probs[1] = 1.0
    probs[1, :, 17], probs[2, :, 17] = 0.0, 1.0  # one model pixel inside raster column 1
    coarse = to_raster_size(probs, 4, 4)
    assert np.allclose(coarse[2, :, 1], 1.0) and np.allclose(coarse[2][:, [0, 2, 3]], 0.0)
    assert np.allclose(coarse[1, :, 1], 0.9)  # the other classes are averaged


def test_footprint_max_covers_each_pixel_exactly_for_uneven_factors():
    values = np.zeros((25, 35), np.float32)
    values[24, 34] = 1.0
    small = footprint_max(values, 5, 7)
    assert small[4, 6] == 1.0 and small.sum() == 1.0


def test_two_fields_across_a_one_pixel_lane_stay_two_fields(tmp_path, monkeypatch):
    monkeypatch.setattr("farmseg.pipeline.segment.make_predictor", lambda *a, **k: _EdgeNet())
    path = _coarse_raster(tmp_path / "coarse.tif", 40, 21, lane=10)
    result = drain(segment_job(SegmentOptions(input=path, model=str(DEFAULT))))
    assert len(result.layer.geoms) == 2
    areas = sorted(g.area for g in result.layer.geoms)
    assert areas[0] == pytest.approx(10.5 * 21 * 100, rel=0.1)  # the lane split between them


def test_memory_stays_bounded_on_a_large_coarse_raster(tmp_path):
    # 12000 x 60 px at 10 m: 72 MPix at the model's 1 m, 864 MB of float probabilities
    path = _coarse_raster(tmp_path / "wide.tif", 12000, 60)
    bundle = load_bundle(DEFAULT)
    tracemalloc.start()
    try:
        with RasterSource(path) as source:
            drain(infer_job(source, bundle, _EdgeNet(), TileSettings(512, 64, 4),
                            tmp_path / "probs.tif", warn=lambda text: None))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 150e6
    with rasterio.open(tmp_path / "probs.tif") as probs:
        assert (probs.width, probs.height) == (12000, 60)  # the raster's own grid


def _bundle_meta(folder: Path, default_for_m: list[float | None] | None) -> None:
    folder.mkdir(parents=True)
    meta = json.loads((DEFAULT / "farmseg.json").read_text())
    meta.pop("default_for_m", None)
    if default_for_m is not None:
        meta["default_for_m"] = default_for_m
    (folder / "farmseg.json").write_text(json.dumps(meta))


def test_default_means_the_bundled_model_for_the_pixel_size(tmp_path, monkeypatch):
    _bundle_meta(tmp_path / "default", [None, 4])
    _bundle_meta(tmp_path / "coarse", [4, None])
    _bundle_meta(tmp_path / "fast", None)
    monkeypatch.setattr("farmseg.models.bundle.bundled_models_dir", lambda: tmp_path)
    assert default_bundle_path(10.0) == tmp_path / "coarse"
    assert default_bundle_path(5.0) == tmp_path / "coarse"
    assert default_bundle_path(2.0) == tmp_path / "default"
    assert default_bundle_path(0.6) == tmp_path / "default"
    assert default_bundle_path(None) == tmp_path / "default"
