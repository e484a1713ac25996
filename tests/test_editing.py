"""Field editing in the core: every edit keeps a clean coverage with correct measurements
and undoes exactly; snapping, clipping, growing from probabilities, review order, saving,
and training labels from corrections."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from pyproj import CRS
from rasterio.transform import from_origin

from farmseg.editing.geometry import coverage_problems, snap_point
from farmseg.editing.grow import grow_field
from farmseg.editing.history import Edit, EditHistory
from farmseg.editing.layer import EditableLayer, EditError, from_field_layer, to_field_layer
from farmseg.editing.ops import (
    confirm,
    delete,
    delete_vertex,
    draw,
    insert_vertex,
    mark_reviewed,
    merge,
    move_vertex,
    split,
    unmark_reviewed,
)
from farmseg.editing.review import ReviewSettings, review_queue
from farmseg.editing.store import load_layer, save_layer
from farmseg.fields.clean import CleanSettings, FieldLayer, clean_fields
from farmseg.fields.vectorize import VectorizeSettings, vectorize_job
from farmseg.jobs import drain
from farmseg.training.corrections import (
    correction_labels,
    find_reviewed,
    load_correction_labels,
)
from farmseg.training.labels import boundary_from_instances

UTM = CRS.from_epsg(32615)
X0, Y0 = 500_000.0, 4_400_000.0


def _box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def _layer(*geoms: shapely.Polygon, confidence: list[float] | None = None) -> EditableLayer:
    columns = {"field_id": np.arange(1, len(geoms) + 1),
               "confidence": np.array(confidence or [0.9] * len(geoms))}
    return from_field_layer(FieldLayer(np.array(geoms, dtype=object), columns, UTM))


@pytest.fixture
def row3() -> EditableLayer:
    """Three 100 x 100 m fields in a row (ids 1, 2, 3 from west to east)."""
    return _layer(_box(0, 0, 100, 100), _box(100, 0, 200, 100), _box(200, 0, 300, 100))


@pytest.fixture
def gap() -> EditableLayer:
    """Two fields with a 100 m gap between them."""
    return _layer(_box(0, 0, 100, 100), _box(200, 0, 300, 100))


def _xy(x: float, y: float) -> tuple[float, float]:
    return X0 + x, Y0 + y


def assert_clean(layer: EditableLayer) -> None:
    """A clean coverage whose measurements are those of its geometry (projected, metres)."""
    assert coverage_problems(layer) == []
    area = shapely.area(layer.geoms)
    perimeter = shapely.length(layer.geoms)
    assert layer.columns["area_ha"] == pytest.approx(area / 10_000, abs=1e-4)
    assert layer.columns["perim_m"] == pytest.approx(perimeter, abs=0.05)
    assert layer.columns["compact"] == pytest.approx(4 * math.pi * area / perimeter ** 2,
                                                     abs=1e-3)
    assert list(layer.ids) == sorted(set(layer.ids))


def assert_same(a: EditableLayer, b: EditableLayer) -> None:
    """Exactly the same layer: geometries vertex for vertex, every column, reviewed areas."""
    assert list(shapely.to_wkb(a.geoms)) == list(shapely.to_wkb(b.geoms))
    assert a.columns.keys() == b.columns.keys()
    for name in a.columns:
        np.testing.assert_array_equal(a.columns[name], b.columns[name])
    assert shapely.to_wkb(a.reviewed) == shapely.to_wkb(b.reviewed)


def _done(layer: EditableLayer, edit: Edit) -> EditableLayer:
    """Apply `edit`, check the result is clean and that undo restores the layer exactly."""
    after = edit.apply(layer)
    assert_clean(after)
    assert_same(edit.revert(after), layer)
    assert_same(edit.apply(edit.revert(after)), after)
    return after


def _status(layer: EditableLayer, field_id: int) -> str:
    return layer.rows([field_id]).columns["status"][0]


def test_conversion_keeps_the_pipeline_columns_and_adds_status(row3):
    assert set(row3.columns["status"]) == {"predicted"}
    assert_clean(row3)
    back = to_field_layer(row3)
    assert list(back.columns["field_id"]) == [1, 2, 3]
    assert_same(from_field_layer(back), row3)


def test_repeated_ids_and_multipolygons_become_separate_fields():
    parts = shapely.MultiPolygon([_box(0, 0, 10, 10), _box(20, 0, 30, 10)])
    layer = from_field_layer(FieldLayer(np.array([parts, _box(40, 0, 50, 10)], dtype=object),
                                        {"field_id": np.array([5, 5])}, UTM))
    assert list(layer.ids) == [5, 6, 7]
    assert_clean(layer)


def test_delete(row3):
    after = _done(row3, delete(row3, [2]))
    assert list(after.ids) == [1, 3]
    with pytest.raises(EditError):
        delete(row3, [])
    with pytest.raises(EditError):
        delete(row3, [9])


def test_merge_dissolves_shared_edges_into_one_new_field(row3):
    after = _done(row3, merge(row3, [1, 2]))
    assert list(after.ids) == [3, 4]
    merged = after.geometry(4)
    assert shapely.equals(merged, _box(0, 0, 200, 100))
    assert merged.area == pytest.approx(20_000)
    assert _status(after, 4) == "edited"
    assert after.rows([4]).columns["area_ha"][0] == pytest.approx(2.0)


def test_merge_of_fields_apart_is_refused(gap):
    with pytest.raises(EditError, match="touch"):
        merge(gap, [1, 2])


def test_split_along_a_line_gives_two_fields_whose_union_is_the_field(row3):
    line = [_xy(150, -10), _xy(130, 50), _xy(160, 110)]
    after = _done(row3, split(row3, 2, line))
    assert list(after.ids) == [1, 3, 4, 5]
    parts = after.rows([4, 5]).geoms
    assert shapely.union_all(parts).symmetric_difference(row3.geometry(2)).area < 1e-6
    assert sum(shapely.area(parts)) == pytest.approx(10_000)
    assert {_status(after, 4), _status(after, 5)} == {"edited"}


def test_split_by_a_line_that_does_not_cross_is_refused(row3):
    with pytest.raises(EditError, match="cross"):
        split(row3, 2, [_xy(150, 50), _xy(150, 120)])


def test_split_on_a_shared_edge_gives_the_neighbour_the_new_vertex():
    layer = _layer(_box(0, 0, 100, 100), _box(0, 100, 100, 200))
    after = _done(layer, split(layer, 1, [_xy(50, -10), _xy(50, 110)]))
    north = after.geometry(2)
    assert (X0 + 50, Y0 + 100) in [tuple(xy) for xy in shapely.get_coordinates(north)]
    assert north.area == pytest.approx(10_000)


def test_a_drawn_field_overlapping_two_neighbours_is_clipped(gap):
    after = _done(gap, draw(gap, [_xy(80, 20), _xy(220, 20), _xy(220, 80), _xy(80, 80)]))
    drawn = after.geometry(3)
    assert shapely.equals(drawn, _box(100, 20, 200, 80))
    assert _status(after, 3) == "drawn"
    assert np.isnan(after.rows([3]).columns["confidence"][0])
    assert shapely.area(after.rows([1, 2]).geoms) == pytest.approx([10_000, 10_000])


def test_drawn_vertices_snap_to_neighbour_vertices_and_edges(gap):
    assert snap_point(gap, _xy(100.4, 99.7), 1.0) == _xy(100, 100)
    assert snap_point(gap, _xy(99.5, 50.0), 1.0) == _xy(100, 50)
    assert snap_point(gap, _xy(150, 50), 1.0) == _xy(150, 50)
    ring = [_xy(100.4, 100.3), _xy(199.6, 99.8), _xy(200.5, 40), _xy(99.3, 30)]
    after = _done(gap, draw(gap, ring, snap=1.0))
    assert shapely.equals(after.geometry(3), shapely.Polygon(
        [_xy(100, 100), _xy(200, 100), _xy(200, 40), _xy(100, 30)]))
    # no sliver between the drawn field and its neighbours
    union = shapely.union_all(after.geoms)
    assert union.geom_type == "Polygon"
    assert len(union.interiors) == 0


def test_a_field_drawn_inside_another_is_refused(row3):
    with pytest.raises(EditError, match="nothing"):
        draw(row3, [_xy(10, 10), _xy(50, 10), _xy(50, 50)])


def test_moving_a_shared_vertex_moves_it_in_both_fields(row3):
    after = _done(row3, move_vertex(row3, 1, _xy(100.5, 99.5), _xy(120, 110), pick=1.0))
    for field_id in (1, 2):
        assert _xy(120, 110) in [tuple(xy) for xy in shapely.get_coordinates(
            after.geometry(field_id))]
        assert _status(after, field_id) == "edited"
    assert _status(after, 3) == "predicted"
    assert sum(shapely.area(after.rows([1, 2]).geoms)) == pytest.approx(20_000 + 10 * 200 / 2)


def test_a_vertex_moved_into_a_neighbour_is_clipped_by_it(row3):
    after = _done(row3, move_vertex(row3, 1, _xy(100, 100), _xy(220, 100)))
    assert shapely.equals(after.geometry(3), row3.geometry(3))
    assert sum(shapely.area(after.geoms)) == pytest.approx(30_000)


def test_moved_vertex_snaps_to_other_fields(gap):
    after = _done(gap, move_vertex(gap, 1, _xy(100, 100), _xy(199.2, 100.5), snap=1.0))
    assert _xy(200, 100) in [tuple(xy) for xy in shapely.get_coordinates(after.geometry(1))]


def test_a_vertex_added_on_a_shared_edge_is_added_to_both_and_moves_both(row3):
    added = _done(row3, insert_vertex(row3, 1, _xy(99.6, 40), pick=1.0))
    for field_id in (1, 2):
        assert shapely.get_num_coordinates(added.geometry(field_id)) == 6
        assert shapely.equals(added.geometry(field_id), row3.geometry(field_id))
    moved = _done(added, move_vertex(added, 2, _xy(100, 40), _xy(130, 40)))
    assert moved.geometry(1).area == pytest.approx(10_000 + 30 * 100 / 2)
    with pytest.raises(EditError, match="already"):
        insert_vertex(row3, 1, _xy(100, 100), pick=1.0)
    with pytest.raises(EditError, match="no edge"):
        insert_vertex(row3, 1, _xy(50, 50), pick=1.0)


def test_deleting_a_vertex(row3):
    added = insert_vertex(row3, 1, _xy(100, 40)).apply(row3)
    bent = move_vertex(added, 1, _xy(100, 40), _xy(130, 40)).apply(added)
    after = _done(bent, delete_vertex(bent, 1, _xy(129, 41), pick=2.0))
    assert shapely.equals(after.geometry(1), row3.geometry(1))
    assert shapely.equals(after.geometry(2), row3.geometry(2))
    triangle = _layer(shapely.Polygon([_xy(0, 0), _xy(10, 0), _xy(0, 10)]))
    with pytest.raises(EditError, match="three"):
        delete_vertex(triangle, 1, _xy(0, 0))


def test_confirm_and_reviewed_areas_undo(row3):
    after = _done(row3, confirm(row3, [1, 3]))
    assert list(after.columns["status"]) == ["confirmed", "predicted", "confirmed"]
    reviewed = _done(after, mark_reviewed(after, _box(-10, -10, 150, 110)))
    assert reviewed.reviewed.area == pytest.approx(160 * 120)
    smaller = _done(reviewed, unmark_reviewed(reviewed, _box(100, -20, 200, 120)))
    assert smaller.reviewed.area == pytest.approx(110 * 120)


def test_history_undoes_and_redoes_a_sequence_exactly(row3):
    history = EditHistory(row3)
    history.do(merge(history.layer, [1, 2]))
    history.do(split(history.layer, 4, [_xy(50, -10), _xy(50, 110)]))
    history.do(draw(history.layer, [_xy(0, 100), _xy(300, 100), _xy(150, 200)]))
    history.do(confirm(history.layer, [3]))
    final = history.layer
    assert_clean(final)
    while history.can_undo:
        history.undo()
    assert_same(history.layer, row3)
    while history.can_redo:
        history.redo()
    assert_same(history.layer, final)
    with pytest.raises(EditError):
        history.redo()


def _two_blobs() -> np.ndarray:
    """Two 60 x 60 px fields that touch, a 2 px line of boundary between them."""
    probs = np.zeros((3, 80, 140), np.uint8)
    probs[0] = 255
    probs[:, 10:70, 10:130] = np.array([10, 235, 10], np.uint8)[:, None, None]
    probs[:, 10:70, 69:71] = np.array([10, 40, 205], np.uint8)[:, None, None]
    return probs


GRID = from_origin(X0, Y0 + 80, 1, 1)  # 1 m pixels, the window's top-left at (X0, Y0 + 80)


def test_grow_makes_the_field_under_the_click_and_not_its_neighbour():
    empty = _layer()
    after = _done(empty, grow_field(empty, _two_blobs(), GRID, _xy(30.5, 40.5)))
    grown = after.geometry(1)
    assert _status(after, 1) == "drawn"
    assert grown.area == pytest.approx(60 * 60, rel=0.05)
    assert grown.contains(shapely.Point(_xy(30, 40)))
    assert not grown.intersects(shapely.Point(_xy(100, 40)))
    assert after.rows([1]).columns["confidence"][0] == pytest.approx(0.96, abs=0.02)


def test_grow_is_clipped_by_existing_fields_and_refused_on_them_and_on_background():
    layer = _layer(_box(60, 0, 140, 80))  # covers the right blob and part of the left one
    after = _done(layer, grow_field(layer, _two_blobs(), GRID, _xy(30.5, 40.5)))
    grown = after.geometry(2)
    assert grown.bounds[2] <= X0 + 60
    assert grown.area == pytest.approx(50 * 60, rel=0.05)
    with pytest.raises(EditError, match="already"):
        grow_field(layer, _two_blobs(), GRID, _xy(100, 40))
    with pytest.raises(EditError, match="no field"):
        grow_field(layer, _two_blobs(), GRID, _xy(5, 5))


def test_review_order_lowest_confidence_then_unusual_shapes():
    strip = _box(0, 200, 1000, 210)  # compactness ~0.03
    layer = _layer(_box(0, 0, 100, 100), _box(100, 0, 200, 100), strip, _box(200, 0, 300, 100),
                   _box(300, 0, 320, 20), confidence=[0.95, 0.5, 0.9, 0.6, 0.9])
    layer = confirm(layer, [1]).apply(layer)
    queue = review_queue(layer, ReviewSettings(low_confidence=0.7))
    assert [item.field_id for item in queue] == [2, 4, 3, 5]
    assert "low confidence" in queue[0].reason
    assert "compactness" in queue[2].reason
    assert "small" in queue[3].reason


def test_fields_made_by_the_pipeline_stay_a_clean_coverage_through_edits(tmp_path):
    import rasterio

    path = tmp_path / "p.tif"
    probs = _two_blobs()
    with rasterio.open(path, "w", driver="GTiff", width=140, height=80, count=3, dtype="uint8",
                       crs="EPSG:32615", transform=GRID) as ds:
        ds.write(probs)
    raw = drain(vectorize_job(path, VectorizeSettings(boundary_threshold=0.5)))
    layer = from_field_layer(clean_fields(raw, CleanSettings(min_area_ha=0.01)))
    assert len(layer) == 2
    assert_clean(layer)
    merged = _done(layer, merge(layer, [1, 2]))
    cut = _done(merged, split(merged, 3, [_xy(40, -1), _xy(40, 81)]))
    drawn = _done(cut, draw(cut, [_xy(0, 40), _xy(20, 40), _xy(20, 90), _xy(0, 90)], snap=1.0))
    west = cut.geometry(4)
    emptied = _done(drawn, delete(drawn, [4]))
    regrown = _done(emptied, grow_field(emptied, probs, GRID, _xy(30.5, 40.5)))
    assert list(regrown.ids) == [5, 6, 7]
    expected = west.difference(drawn.geometry(6))
    assert regrown.geometry(7).symmetric_difference(expected).area < 0.05 * expected.area


def test_save_and_load_a_geopackage_with_reviewed_areas(row3, tmp_path):
    layer = confirm(row3, [2]).apply(row3)
    layer = mark_reviewed(layer, _box(0, 0, 150, 100)).apply(layer)
    path = save_layer(layer, tmp_path / "edited.gpkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.gpkg"]
    loaded = load_layer(path)
    assert list(loaded.columns["status"]) == ["predicted", "confirmed", "predicted"]
    assert shapely.equals(loaded.reviewed, layer.reviewed)
    assert list(shapely.to_wkb(loaded.geoms)) == list(shapely.to_wkb(layer.geoms))
    np.testing.assert_allclose(loaded.columns["area_ha"], layer.columns["area_ha"])
    with pytest.raises(Exception, match="GeoPackage"):
        save_layer(layer, tmp_path / "edited.geojson")
    geojson = load_layer(save_layer(row3, tmp_path / "plain.geojson"))
    assert list(geojson.ids) == [1, 2, 3]
    assert set(geojson.columns["status"]) == {"predicted"}


def test_labels_from_corrections_are_ignored_outside_reviewed_areas(row3, tmp_path):
    transform = from_origin(X0, Y0 + 100, 1, 1)
    reviewed = np.array([_box(0, 0, 150, 100)], dtype=object)
    mask, valid, instances = correction_labels(row3.geoms, reviewed, (100, 300), transform)
    assert valid[:, :150].all() and not valid[:, 150:].any()
    np.testing.assert_array_equal(mask, boundary_from_instances(instances))
    assert set(np.unique(mask)) == {1, 2}
    assert (mask[:, 98:102] == 2).all()

    data = tmp_path / "data"
    (data / "fields").mkdir(parents=True)
    layer = mark_reviewed(row3, reviewed[0]).apply(row3)
    save_layer(layer, data / "fields" / "a.gpkg")
    save_layer(row3, data / "fields" / "b.gpkg")
    assert find_reviewed(data, "a") == (data / "fields" / "a.gpkg", "reviewed")
    assert find_reviewed(data, "c") is None
    (data / "reviewed").mkdir()
    areas = _layer(_box(0, 0, 50, 50))
    save_layer(areas, data / "reviewed" / "b.geojson")
    found = find_reviewed(data, "b")
    assert found == (data / "reviewed" / "b.geojson", None)
    mask_b, valid_b, _ = load_correction_labels(data / "fields" / "b.gpkg", found,
                                                (100, 300), transform, UTM)
    assert valid_b.sum() == pytest.approx(2500, abs=60)
    np.testing.assert_array_equal(mask_b, mask)


def test_coverage_problems_finds_overlaps_and_unshared_edges():
    overlapping = _layer(_box(0, 0, 100, 100), _box(90, 0, 200, 100))
    assert any("overlap" in p for p in coverage_problems(overlapping))
    t_junction = _layer(_box(0, 0, 100, 100), _box(100, 0, 200, 50), _box(100, 50, 200, 100))
    assert any("do not share" in p for p in coverage_problems(t_junction))
