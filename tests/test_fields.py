"""Field geometry: separation of touching fields, seam-free bands, clean topology, areas."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import shapely
from pyproj import CRS
from rasterio import features
from rasterio.transform import from_origin
from scipy import ndimage

import farmseg.fields.vectorize
from farmseg.cli import main
from farmseg.fields.clean import CleanSettings, _simplify, clean_fields
from farmseg.fields.measure import areas_perimeters_m
from farmseg.fields.polygonize import polygonize
from farmseg.fields.vectorize import VectorizeSettings, vectorize_job
from farmseg.geoio.vectors import reproject
from farmseg.jobs import drain
from farmseg.scoring.evaluate import score_instances
from tests.conftest import SAMPLE, SAMPLE_FIELDS


def _write_probs(path: Path, probs: np.ndarray) -> Path:
    _, h, w = probs.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                       crs="EPSG:32615", transform=from_origin(500000, 4400000, 1, 1)) as ds:
        ds.write(probs)
    return path


def _fields(prob_path: Path, tmp: Path, **settings):
    raw = drain(vectorize_job(prob_path, VectorizeSettings(**settings)))
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
    from farmseg.scoring.evaluate import evaluate_files

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


@pytest.mark.parametrize("band_rows", [None, 97, 50])
def test_neighbours_share_edges_without_gaps_or_overlaps(tmp_path, sample_probs, band_rows):
    raw = drain(vectorize_job(sample_probs, VectorizeSettings(band_rows=band_rows)))
    layer = clean_fields(raw, CleanSettings())
    geoms = layer.geoms
    assert all(shapely.is_valid(geoms))
    # edge-matched, band edges included: no gap, overlap or vertex missing on either side
    assert shapely.coverage_is_valid(raw.geoms) and shapely.coverage_is_valid(geoms)
    assert shapely.area(shapely.union_all(geoms)) == pytest.approx(shapely.area(geoms).sum(),
                                                                   rel=1e-6)
    tree = shapely.STRtree(geoms)
    pairs = tree.query(geoms, predicate="intersects")
    touching = [(i, j) for i, j in pairs.T if i < j]
    assert touching, "the sample scene has neighbouring fields"
    for i, j in touching:
        assert shapely.area(shapely.intersection(geoms[i], geoms[j])) < 1e-6


def test_fields_meeting_at_a_band_edge_share_its_vertices(tmp_path):
    field, boundary = (np.array(p, np.uint8)[:, None, None] for p in ([0, 255, 0], [0, 0, 255]))
    probs = np.zeros((3, 40, 60), np.uint8)
    probs[0] = 255
    probs[:, 5:20, 5:50] = field  # above the band edge at row 20
    probs[:, 19, 5:50] = boundary[:, 0]
    probs[:, 20:35, 10:30] = probs[:, 20:35, 33:55] = field  # two fields below it
    probs[:, 20:35, 30:33] = boundary
    path = _write_probs(tmp_path / "p.tif", probs)
    raw = drain(vectorize_job(path, VectorizeSettings(band_rows=20, halo=0)))
    assert len(raw.geoms) == 3 and shapely.coverage_is_valid(raw.geoms)


def test_result_does_not_depend_on_the_number_of_threads(tmp_path, sample_probs, monkeypatch):
    layers = []
    for threads in (1, 3):
        monkeypatch.setattr(farmseg.fields.vectorize, "cpu_threads",
                            lambda threads=threads: threads)
        layers.append(_fields(sample_probs, tmp_path, band_rows=97))
    assert list(shapely.to_wkb(layers[0].geoms)) == list(shapely.to_wkb(layers[1].geoms))


def _gdal_polygons(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shapes = list(features.shapes(labels, mask=labels > 0, connectivity=4))
    return (np.array([shapely.Polygon(g["coordinates"][0], g["coordinates"][1:])
                      for g, _ in shapes], dtype=object),
            np.array([int(v) for _, v in shapes], dtype=int))


def _by_place(geoms: np.ndarray, labels: np.ndarray) -> np.ndarray:
    centre = shapely.centroid(geoms)
    return np.lexsort((np.round(shapely.get_y(centre), 6), np.round(shapely.get_x(centre), 6),
                       np.round(shapely.area(geoms), 6), labels))


@pytest.mark.parametrize("case", range(300))
def test_polygons_are_those_of_gdal_with_every_junction_as_a_vertex(case):
    rng = np.random.default_rng(case)
    shape = rng.integers(1, 40, 2)
    if case % 3 == 0:  # noise: regions touching at corners, holes, holes in holes
        labels = rng.integers(0, 2 + case % 4, shape)
    else:  # blobs: shared edges with junctions of three or four regions
        noise = ndimage.gaussian_filter(rng.random(shape), 1 + case % 3)
        labels = np.digitize(noise, np.quantile(noise, np.linspace(0, 1, 3 + case % 5)[1:-1]))
    labels = labels.astype(np.int32)
    ours, our_labels = polygonize(labels, 7)
    gdal, gdal_labels = _gdal_polygons(labels)
    gdal = shapely.transform(gdal, lambda xy: xy + [0, 7])
    assert all(shapely.is_valid(ours)) and len(ours) == len(gdal)
    mine, theirs = _by_place(ours, our_labels), _by_place(gdal, gdal_labels)
    assert (our_labels[mine] == gdal_labels[theirs]).all()
    assert shapely.area(shapely.symmetric_difference(ours[mine], gdal[theirs])).sum() == 0
    if case % 3:
        assert shapely.coverage_is_valid(ours)


def test_opencv_numbers_seed_pixels_row_by_row():
    """_grow relies on it to map nearest seed pixels to seed labels."""
    seeds = np.random.default_rng(1).random((300, 400)) < 0.02
    _, nearest = cv2.distanceTransformWithLabels((~seeds).view(np.uint8), cv2.DIST_L2, 5,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    assert (nearest[seeds] == np.arange(1, seeds.sum() + 1)).all()


def test_simplifying_in_groups_equals_simplifying_at_once(tmp_path, sample_probs):
    raw = drain(vectorize_job(sample_probs, VectorizeSettings()))
    whole = shapely.coverage_simplify(raw.geoms, 1.0, simplify_boundary=True)
    assert list(shapely.to_wkb(_simplify(raw.geoms, 1.0))) == list(shapely.to_wkb(whole))


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
