"""Field geometry: separation of touching fields, seam-free bands, clean topology, areas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import CRS
from rasterio.transform import from_origin

from farmseg.cli import main
from farmseg.evaluate import score_instances
from farmseg.fields import CleanSettings, clean_fields
from farmseg.jobs import drain
from farmseg.measure import areas_perimeters_m
from farmseg.vectorize import VectorizeSettings, vectorize_job
from farmseg.vectors import reproject
from tests.conftest import SAMPLE, SAMPLE_FIELDS


def _write_probs(path: Path, probs: np.ndarray) -> Path:
    _, h, w = probs.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                       crs="EPSG:32615", transform=from_origin(500000, 4400000, 1, 1)) as ds:
        ds.write(probs)
    return path


def _fields(prob_path: Path, tmp: Path, **settings):
    raw = drain(vectorize_job(prob_path, tmp, VectorizeSettings(**settings)))
    return clean_fields(raw, CleanSettings(min_area_ha=0.01))


def _two_touching_fields() -> np.ndarray:
    """Two 60 x 60 m fields; between them a 2 px strip the model is unsure about."""
    probs = np.zeros((3, 80, 140), np.uint8)
    probs[0] = 255
    probs[:, 10:70, 10:130] = np.array([10, 235, 10], np.uint8)[:, None, None]
    probs[:, 10:70, 69:71] = np.array([10, 140, 105], np.uint8)[:, None, None]
    return probs


def test_touching_fields_are_separated_on_a_synthetic_scene(tmp_path):
    probs = _write_probs(tmp_path / "p.tif", _two_touching_fields())
    plain = _fields(probs, tmp_path, method="threshold")
    seeded = _fields(probs, tmp_path, method="seeded", boundary_threshold=0.3)
    assert len(plain) == 1
    assert len(seeded) == 2
    assert seeded.columns["area_ha"] == pytest.approx([0.36, 0.36], abs=0.02)


def test_separation_beats_plain_thresholding_on_a_real_scene(tmp_path):
    from farmseg.evaluate import evaluate_files

    scores = {}
    for method in ("threshold", "seeded"):
        out = tmp_path / f"{method}.gpkg"
        assert main(["segment", str(SAMPLE), "-o", str(out), "--method", method, "-q"]) == 0
        scores[method] = evaluate_files(out, SAMPLE_FIELDS, SAMPLE).score
    assert scores["seeded"].matches > scores["threshold"].matches
    assert scores["seeded"].f1 > scores["threshold"].f1


@pytest.fixture(scope="module")
def sample_probs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("probs")
    prob = folder / "p.tif"
    assert main(["segment", str(SAMPLE), "-o", str(folder / "f.gpkg"), "--prob", str(prob),
                 "-q"]) == 0
    return prob


def test_result_does_not_depend_on_the_band_height(tmp_path, sample_probs):
    whole = _fields(sample_probs, tmp_path, band_rows=1024)
    banded = _fields(sample_probs, tmp_path, band_rows=97)
    assert abs(len(whole) - len(banded)) <= max(2, 0.03 * len(whole))
    a, b = shapely.union_all(whole.geoms), shapely.union_all(banded.geoms)
    assert shapely.area(a & b) / shapely.area(a | b) >= 0.98
    # no field is cut along a band edge: no polygon edge lies on a band row
    for geom in banded.geoms:
        assert geom.is_valid


def test_neighbours_share_edges_without_gaps_or_overlaps(tmp_path, sample_probs):
    raw = drain(vectorize_job(sample_probs, tmp_path, VectorizeSettings()))
    layer = clean_fields(raw, CleanSettings())
    geoms = layer.geoms
    assert all(shapely.is_valid(geoms))
    assert shapely.area(shapely.union_all(geoms)) == pytest.approx(shapely.area(geoms).sum(),
                                                                   rel=1e-6)
    tree = shapely.STRtree(geoms)
    pairs = tree.query(geoms, predicate="intersects")
    touching = [(i, j) for i, j in pairs.T if i < j]
    assert touching, "the sample scene has neighbouring fields"
    for i, j in touching:
        assert shapely.area(shapely.intersection(geoms[i], geoms[j])) < 1e-6


def test_geodesic_area_on_a_geographic_layer():
    square = shapely.box(500000, 4400000, 500100, 4400100)  # 1 ha in UTM 15N
    geo = reproject(np.array([square]), "EPSG:32615", "EPSG:4326")
    area, perimeter = areas_perimeters_m(geo, CRS.from_epsg(4326))
    assert area[0] == pytest.approx(10_000, rel=0.005)
    assert perimeter[0] == pytest.approx(400, rel=0.005)


def test_scores_on_hand_made_cases():
    ref = np.zeros((10, 10), int)
    ref[:, :4], ref[:, 4:] = 1, 2  # 40 px and 60 px fields side by side
    merged = score_instances((ref > 0).astype(int), ref)  # one blob over both
    assert (merged.matches, merged.predicted, merged.reference) == (1, 1, 2)
    assert merged.f1 == pytest.approx(2 / 3) and merged.under_segmented == 1
    assert merged.pixel_iou == 1.0
    one = np.ones((10, 10), int)
    halves = one.copy()
    halves[:, :45 // 10] = 2  # 40 / 60 px pieces of one reference field
    split = score_instances(halves, one)
    assert (split.matches, split.predicted, split.reference) == (1, 2, 1)
    assert split.over_segmented == 1 and split.f1 == pytest.approx(2 / 3)
    assert score_instances(ref, ref).f1 == 1.0
    assert score_instances(np.zeros_like(ref), ref).f1 == 0.0
    assert (merged + split).f1 == pytest.approx(2 * 2 / (3 + 3))


def test_evaluate_command_ends_with_field_f1(tmp_path, capsys, sample_probs):
    pred = sample_probs.with_name("f.gpkg")
    report = tmp_path / "report.html"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(SAMPLE_FIELDS), "--image",
                 str(SAMPLE), "--report", str(report)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("field F1: 0.") and len(last.split(": ")[1]) == 5
    assert "data:image/png;base64" in report.read_text()


def test_tile_size_does_not_change_the_fields(tmp_path):
    layers = []
    for tile, overlap in ((256, 32), (1024, 64)):
        out = tmp_path / f"t{tile}.gpkg"
        assert main(["segment", str(SAMPLE), "-o", str(out), "--tile", str(tile), "--overlap",
                     str(overlap), "-q"]) == 0
        import pyogrio

        layers.append(shapely.from_wkb(pyogrio.raw.read(out)[2]))
    a, b = (shapely.union_all(g) for g in layers)
    assert abs(len(layers[0]) - len(layers[1])) <= max(2, 0.03 * len(layers[0]))
    assert shapely.area(a & b) / shapely.area(a | b) >= 0.98
    assert all(shapely.is_valid(layers[0])) and all(shapely.is_valid(layers[1]))
