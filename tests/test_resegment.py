"""Re-segmenting the rest in the core: fields the user made or checked and the fields in the
reviewed areas stay, the other predicted fields are replaced by the new model's, clipped, in
one edit that keeps the coverage clean and undoes exactly."""

from __future__ import annotations

import numpy as np
import shapely
from pyproj import CRS

from farmseg.editing.geometry import coverage_problems
from farmseg.editing.layer import EditableLayer, from_field_layer
from farmseg.editing.resegment import merge_resegmented, replaced_ids
from farmseg.fields.clean import FieldLayer

UTM = CRS.from_epsg(32615)
X0, Y0 = 500_000.0, 4_400_000.0
SIDE = 400.0


def _boxes(xs: list[float], ys: list[float]) -> list[shapely.Polygon]:
    """The rectangles between consecutive `xs` and `ys` (m from the origin), row by row."""
    return [shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)
            for y0, y1 in zip(ys, ys[1:]) for x0, x1 in zip(xs, xs[1:])]


def _fields(geoms: list[shapely.Polygon], model: str) -> FieldLayer:
    n = len(geoms)
    return FieldLayer(np.array(geoms, dtype=object),
                      {"field_id": np.arange(1, n + 1), "confidence": np.full(n, 0.8),
                       "model": np.array([model] * n, dtype=object)}, UTM)


def _old() -> EditableLayer:
    """A 4 x 4 grid of 100 m fields (ids 1..16 row by row from the south-west): 1 edited,
    16 drawn, 13 confirmed, the rest predicted; reviewed: the south-east 150 x 150 m."""
    edges = [0.0, 100.0, 200.0, 300.0, SIDE]
    layer = from_field_layer(_fields(_boxes(edges, edges), "base"),
                             shapely.box(X0 + 250, Y0, X0 + SIDE, Y0 + 150))
    status = np.array(layer.columns["status"])
    status[[0, 15, 12]] = ["edited", "drawn", "confirmed"]
    return EditableLayer(layer.geoms, {**layer.columns, "status": status}, layer.crs,
                         layer.reviewed)


def _new() -> FieldLayer:
    """The new model's fields: the grid shifted by 50 m (a clean coverage of the square)."""
    edges = [0.0, 50.0, 150.0, 250.0, 350.0, SIDE]
    return _fields(_boxes(edges, edges), "tuned")


def test_kept_fields_and_reviewed_areas_survive_predicted_are_replaced():
    layer = _old()
    edit = merge_resegmented(layer, _new())
    after = edit.apply(layer)
    assert coverage_problems(after) == []
    in_reviewed = [3, 4, 7, 8]  # predicted, but sharing area with the reviewed corner
    for fid in [1, 13, 16, *in_reviewed]:
        assert after.geometry(fid).equals(layer.geometry(fid)), fid
        at = after.index_of([fid])[0]
        assert after.columns["status"][at] == layer.columns["status"][layer.index_of([fid])[0]]
    gone = sorted(set(range(1, 17)) - {1, 13, 16, *in_reviewed})
    assert replaced_ids(layer).tolist() == gone
    assert not np.isin(gone, after.ids).any()
    fresh = after.ids >= layer.next_id()
    assert fresh.sum() > len(gone) // 2
    assert set(after.columns["status"][fresh]) == {"predicted"}
    assert set(after.columns["model"][fresh]) == {"tuned"}
    assert (after.columns["area_ha"][fresh] >= 0.1).all()
    new_area = shapely.union_all(after.geoms[fresh])
    assert new_area.intersection(layer.reviewed).area < 1e-6
    assert after.reviewed.equals(layer.reviewed)
    assert shapely.union_all(after.geoms).area == np.float64(SIDE * SIDE)  # no gap, no overlap
    assert abs(sum(shapely.area(after.geoms)) - SIDE * SIDE) < 1e-3


def test_one_edit_that_undoes_exactly():
    layer = _old()
    edit = merge_resegmented(layer, _new())
    back = edit.revert(edit.apply(layer))
    assert back.ids.tolist() == layer.ids.tolist()
    assert all(shapely.equals_exact(a, b, 0.0) for a, b in zip(back.geoms, layer.geoms))
    assert back.columns["status"].tolist() == layer.columns["status"].tolist()


def test_without_reviewed_areas_every_predicted_field_is_replaced_and_slivers_dropped():
    layer = _old()
    layer = EditableLayer(layer.geoms, layer.columns, layer.crs)
    after = merge_resegmented(layer, _new(), min_area_ha=0.3).apply(layer)
    assert sorted(after.ids[after.ids < layer.next_id()].tolist()) == [1, 13, 16]
    assert (after.columns["area_ha"][after.ids >= layer.next_id()] >= 0.3).all()
    assert coverage_problems(after) == []
