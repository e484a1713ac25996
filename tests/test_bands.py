"""Band choice by band description and declared reflectance offsets (Sentinel-2 files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from farmseg.geoio.raster import RasterSource, band_name
from farmseg.models.bundle import bundled_models_dir, load_bundle
from farmseg.pipeline.inference import band_note, model_bands

DEFAULT = bundled_models_dir() / "default"


def _write(path: Path, data: np.ndarray, descriptions: list[str] | None = None,
           tags: dict[str, str] | None = None, offsets: tuple[float, float] | None = None
           ) -> Path:
    """A 10 m uint16 GeoTIFF with optional band descriptions, dataset tags and GDAL
    (scale, offset) on every band."""
    count, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count,
                       dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(500000, 5000000, 10, 10)) as out:
        out.write(data.astype(np.uint16))
        for index, text in enumerate(descriptions or []):
            out.set_band_description(index + 1, text)
        if tags:
            out.update_tags(**tags)
        if offsets:
            out.scales = (offsets[0],) * count
            out.offsets = (offsets[1],) * count
    return path


def _pixels(count: int) -> np.ndarray:
    return (np.arange(count)[:, None, None] * 100 + 1500 + np.zeros((count, 8, 8))).astype(int)


@pytest.mark.parametrize("label, name", [
    ("red (B04)", "red"), ("B4", "red"), ("B04", "red"), ("Red", "red"), ("green", "green"),
    ("Blue (B02)", "blue"), ("B08", "nir"), ("NIR", "nir"), ("Red edge 1 (B05)", None),
    ("B8A", None), ("", None), ("gray", None), ("SWIR (B11)", None),
])
def test_band_names_from_descriptions(label, name):
    assert band_name(label) == name


def test_sentinel2_stack_bands_are_chosen_by_description(tmp_path):
    path = _write(tmp_path / "s2.tif", _pixels(4),
                  ["blue (B02)", "green (B03)", "red (B04)", "nir (B08)"])
    bundle = load_bundle(DEFAULT)
    with RasterSource(path) as src:
        assert model_bands(src, bundle, None) == [3, 2, 1]
        assert band_note(src, bundle, None) is None
        assert model_bands(src, bundle, [1, 2, 3]) == [1, 2, 3]  # --bands wins


def test_three_uint16_bands_that_say_red_green_blue_need_no_bands_option(tmp_path):
    path = _write(tmp_path / "rgb.tif", _pixels(3), ["B4", "B3", "B2"])
    bundle = load_bundle(DEFAULT)
    with RasterSource(path) as src:
        assert model_bands(src, bundle, None) == [1, 2, 3]
        assert band_note(src, bundle, None) is None


def test_bands_without_descriptions_get_one_line_of_guidance(tmp_path):
    path = _write(tmp_path / "plain.tif", _pixels(4))
    bundle = load_bundle(DEFAULT)
    with RasterSource(path) as src:
        assert model_bands(src, bundle, None) == [1, 2, 3]
        note = band_note(src, bundle, None)
    assert note is not None and "\n" not in note and "--bands" in note


def test_the_l2a_offset_is_applied_only_where_declared(tmp_path):
    data = _pixels(3)
    data[0, 0, 0] = 400  # darker than the offset: clipped at 0, not wrapped around
    plain = _write(tmp_path / "plain.tif", data)
    tagged = _write(tmp_path / "tag.tif", data, tags={"BOA_ADD_OFFSET": "-1000"})
    per_band = _write(tmp_path / "band.tif", data, ["B04", "B03", "B02"],
                      tags={"BOA_ADD_OFFSET_B4": "-1000", "BOA_ADD_OFFSET_B3": "-1000"})
    gdal = _write(tmp_path / "gdal.tif", data, offsets=(0.0001, -0.1))
    window = rasterio.windows.Window(0, 0, 8, 8)
    reads = {}
    for path in (plain, tagged, per_band, gdal):
        with RasterSource(path) as src:
            reads[path.stem] = src.read(window, [1, 2, 3])[0]
    assert np.array_equal(reads["plain"], data)
    expected = np.clip(data - 1000, 0, None)
    assert reads["tag"].dtype == np.uint16 and reads["tag"][0, 0, 0] == 0
    assert np.array_equal(reads["tag"], expected)
    assert np.array_equal(reads["gdal"], expected)
    assert np.array_equal(reads["band"][:2], expected[:2])
    assert np.array_equal(reads["band"][2], data[2])  # B02 declares no offset
