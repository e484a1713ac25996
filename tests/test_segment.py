"""End to end: real crops in, polygons out; odd rasters; every export format."""

from __future__ import annotations

import os

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.warp import Resampling, calculate_default_transform, reproject

from farmseg.cli import main
from farmseg.scoring.evaluate import evaluate_files
from tests.conftest import SAMPLE, SAMPLE_FIELDS, write_crop


def _segment(*args: str) -> int:
    return main(["segment", *map(str, args), "-q"])


def test_polygons_overlap_the_hand_drawn_fields(tmp_path):
    out = tmp_path / "fields.gpkg"
    assert _segment(SAMPLE, "-o", out) == 0
    score = evaluate_files(out, SAMPLE_FIELDS, SAMPLE).score
    assert score.pixel_iou > 0.8
    assert score.f1 > 0.5
    info = pyogrio.read_info(out, layer="fields")
    assert info["features"] > 20
    assert set(info["fields"]) >= {"field_id", "area_ha", "perim_m", "confidence", "model"}


@pytest.mark.parametrize("size", [1, 10, 77])
def test_tiny_rasters_give_a_valid_layer(tmp_path, size):
    crop = write_crop(SAMPLE, tmp_path / "tiny.tif", 300, 300, size, size)
    out = tmp_path / "tiny.geojson"
    assert _segment(crop, "-o", out) == 0
    assert pyogrio.read_info(out)["features"] >= 0


def test_non_multiple_of_tile_raster(tmp_path):
    crop = write_crop(SAMPLE, tmp_path / "odd.tif", 0, 0, 300, 233)
    out = tmp_path / "odd.gpkg"
    assert _segment(crop, "-o", out, "--tile", "256", "--overlap", "32") == 0
    assert pyogrio.read_info(out)["features"] > 0


@pytest.mark.parametrize("model", ["default", "fast"])  # fast: read resampled to 2 m
def test_nodata_pixels_are_never_inside_a_field(tmp_path, model):
    crop = write_crop(SAMPLE, tmp_path / "nd.tif", 512, 576, 384, 384, nodata=0)
    with rasterio.open(crop, "r+") as ds:
        data = ds.read()
        data[:, :, :191] = 0  # west half is nodata (an odd edge: inside a 2 m pixel)
        ds.write(data)
        west_edge = (ds.transform @ (191, 0))[0]
    out = tmp_path / "nd.gpkg"
    assert _segment(crop, "-o", out, "--model", model) == 0
    _, _, wkb, _ = pyogrio.raw.read(out)
    geoms = shapely.from_wkb(wkb)
    assert len(geoms) > 0
    assert shapely.bounds(geoms)[:, 0].min() >= west_edge - 1e-6


def test_all_nodata_raster_is_not_an_error(tmp_path):
    crop = write_crop(SAMPLE, tmp_path / "empty.tif", 0, 0, 300, 300, nodata=0)
    with rasterio.open(crop, "r+") as ds:
        ds.write(np.zeros((3, 300, 300), np.uint8))
    out = tmp_path / "empty.geojson"
    assert _segment(crop, "-o", out) == 0
    assert pyogrio.read_info(out)["features"] == 0


def test_uint16_input_is_stretched_sensibly(tmp_path, sample_crop, capsys):
    crop16 = write_crop(sample_crop, tmp_path / "c16.tif", 0, 0, 384, 384, dtype="uint16")
    with rasterio.open(crop16, "r+") as ds:
        ds.write((ds.read().astype(np.uint32) * 40 + 1000).astype(np.uint16))
    out8, out16 = tmp_path / "a.gpkg", tmp_path / "b.gpkg"
    assert _segment(sample_crop, "-o", out8) == 0
    assert _segment(crop16, "-o", out16) == 0
    assert "percentile stretch" in capsys.readouterr().err
    a, b = (shapely.union_all(shapely.from_wkb(pyogrio.raw.read(p)[2])) for p in (out8, out16))
    assert a.area > 0 and (a & b).area / (a | b).area > 0.8


def test_geographic_raster_areas_match_the_projected_run(tmp_path, sample_crop):
    geo = tmp_path / "geo.tif"
    with rasterio.open(sample_crop) as src:
        transform, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width,
                                                      src.height, *src.bounds)
        profile = src.profile
        profile.update(crs="EPSG:4326", transform=transform, width=w, height=h)
        with rasterio.open(geo, "w", **profile) as dst:
            for band in range(1, 4):
                reproject(rasterio.band(src, band), rasterio.band(dst, band),
                          resampling=Resampling.bilinear)
    a, b = tmp_path / "utm.gpkg", tmp_path / "geo.gpkg"
    assert _segment(sample_crop, "-o", a) == 0
    assert _segment(geo, "-o", b) == 0
    area = [pyogrio.raw.read(p, columns=["area_ha"])[3][0].sum() for p in (a, b)]
    assert area[0] > 1 and abs(area[1] - area[0]) / area[0] < 0.05


def test_finer_pixels_are_resampled_to_the_model_and_give_the_same_fields(tmp_path,
                                                                         sample_crop, capsys):
    """The crop at 0.5 m (each pixel split in four) gives the fields of the 1 m original,
    on its own 0.5 m grid."""
    fine = tmp_path / "fine.tif"
    with rasterio.open(sample_crop) as src:
        profile = src.profile
        profile.update(width=src.width * 2, height=src.height * 2,
                       transform=src.transform * src.transform.scale(0.5, 0.5))
        data = src.read(out_shape=(src.count, src.height * 2, src.width * 2),
                        resampling=Resampling.bilinear)
    with rasterio.open(fine, "w", **profile) as dst:
        dst.write(data)
    a, b, probs = tmp_path / "a.gpkg", tmp_path / "b.gpkg", tmp_path / "p.tif"
    assert _segment(sample_crop, "-o", a) == 0
    capsys.readouterr()
    assert _segment(fine, "-o", b, "--prob", probs) == 0
    assert "warning" not in capsys.readouterr().err  # a factor of 2 is no cause for worry
    assert main(["info", str(fine)]) == 0
    assert "0.50 m pixels, model 'default' was trained on 1 m" in capsys.readouterr().out
    with rasterio.open(probs) as src:
        assert (src.width, src.height) == (768, 768)
    unions = [shapely.union_all(shapely.from_wkb(pyogrio.raw.read(p)[2])) for p in (a, b)]
    assert unions[0].intersection(unions[1]).area / unions[0].union(unions[1]).area > 0.95
    counts = [pyogrio.read_info(p)["features"] for p in (a, b)]
    assert abs(counts[0] - counts[1]) <= max(2, 0.1 * counts[0])


def test_a_large_resampling_factor_is_a_warning(tmp_path, capsys):
    coarse = write_crop(SAMPLE, tmp_path / "coarse.tif", 0, 0, 96, 96)
    with rasterio.open(coarse, "r+") as ds:  # the same pixels, declared 5 m
        ds.transform = ds.transform * ds.transform.scale(5, 5)
    assert _segment(coarse, "-o", tmp_path / "c.gpkg") == 0
    err = capsys.readouterr().err
    assert "warning" in err and "5.00 m pixels" in err and "results may be poor" in err


@pytest.mark.parametrize("suffix,extra", [(".geojson", []), (".shp", [".shx", ".dbf", ".prj",
                                                                         ".cpg"]),
                                          (".gpkg", []), (".kml", [])])
def test_every_export_format_reads_back(tmp_path, sample_crop, suffix, extra):
    out = tmp_path / f"fields{suffix}"
    assert _segment(sample_crop, "-o", out) == 0
    for sidecar in extra:
        assert out.with_suffix(sidecar).is_file()
    info = pyogrio.read_info(out)
    assert info["features"] > 0
    if suffix in (".geojson", ".kml"):
        assert "4326" in info["crs"]
        _, _, wkb, _ = pyogrio.raw.read(out)
        lon, lat = shapely.get_coordinates(shapely.from_wkb(wkb)).mean(axis=0)
        assert -96 < lon < -95 and 39 < lat < 40
    if suffix == ".shp":
        assert out.with_suffix(".cpg").read_text().strip().upper().startswith("UTF")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_probability_class_and_csv_outputs(tmp_path, sample_crop):
    prob, classes, table = tmp_path / "p.tif", tmp_path / "c.tif", tmp_path / "f.csv"
    assert _segment(sample_crop, "-o", tmp_path / "f.gpkg", "--prob", prob, "--classes",
                    classes, "--csv", table) == 0
    with rasterio.open(prob) as p, rasterio.open(classes) as c:
        assert p.count == 3 and c.read(1).max() <= 2 and p.crs == c.crs
    assert table.read_text().splitlines()[0].startswith("field_id,area_ha")


def test_outputs_get_ordinary_permissions(tmp_path, sample_crop):
    out = tmp_path / "fields.gpkg"
    assert _segment(sample_crop, "-o", out) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
