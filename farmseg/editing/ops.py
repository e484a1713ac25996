"""Edit operations: pure functions from a layer (and a gesture in map units) to an `Edit`.

None of them changes the layer; `Edit.apply` gives the layer after. Geometry changes keep
a clean coverage (see `geometry.settle`); touched fields are measured again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import reduce

import numpy as np
import shapely
import shapely.ops

from farmseg.editing.geometry import (
    coverage_problems,
    fields_near,
    nearest_vertex,
    node_tolerance,
    replace_vertex,
    settle,
    sharing_vertex,
    snap_point,
)
from farmseg.editing.history import Edit
from farmseg.editing.layer import EditableLayer, EditError

Point = tuple[float, float]


def _plural(count: int, what: str) -> str:
    return f"{count} {what}" if count == 1 else f"{count} {what}s"


def _selection(layer: EditableLayer, ids: Iterable[int], least: int, verb: str) -> list[int]:
    ids = sorted({int(i) for i in ids})
    if len(ids) < least:
        raise EditError(f"select {'a field' if least == 1 else f'{least} or more fields'} "
                        f"to {verb}")
    layer.index_of(ids)
    return ids


def commit(layer: EditableLayer, text: str,
           fitted: tuple[dict[int, shapely.Polygon], dict[int, shapely.Polygon]],
           status: str, gone: Sequence[int] = (), confidence: float = np.nan,
           parents: Sequence[int] = ()) -> Edit:
    """The edit that removes the fields `gone` and puts in those of `fitted` (new polygons
    by id, as `settle` returns them, and the neighbours it gave vertices): existing ids
    are reshaped, other ids are new fields (`confidence`, source of `parents`); both get
    `status`, neighbours keep theirs. All of them are measured again."""
    done, noded = fitted
    old = [fid for fid in done if np.isin(fid, layer.ids)]
    fresh = [fid for fid in done if fid not in old]
    parts = [layer.with_geometries(old, [done[fid] for fid in old], status),
             layer.new_rows([done[fid] for fid in fresh], status, confidence, parents, fresh),
             layer.with_geometries(list(noded), list(noded.values()))]
    added = reduce(lambda a, b: a.replace_rows([], b), parts)
    edit = Edit(text, layer.rows([*gone, *old, *noded]), added)
    _keep_clean(layer, edit)
    return edit


def _keep_clean(layer: EditableLayer, edit: Edit) -> None:
    """Refuse an edit that would leave a clean neighbourhood unclean (a safety net for
    rare floating-point cases the fitting cannot resolve)."""
    after = edit.apply(layer)
    tolerance = node_tolerance(layer)

    def around(where: EditableLayer, changed: EditableLayer) -> EditableLayer:
        area = shapely.GeometryCollection(list(changed.geoms))
        return where.rows(where.ids[fields_near(where, area, tolerance)])

    if not coverage_problems(around(layer, edit.removed)):
        problems = coverage_problems(around(after, edit.added))
        if problems:
            raise EditError(f"this edit would break the field coverage ({problems[0]}); "
                            "try a slightly different shape")


def delete(layer: EditableLayer, ids: Iterable[int]) -> Edit:
    """Remove the fields `ids`."""
    ids = _selection(layer, ids, 1, "delete")
    return Edit(f"Delete {_plural(len(ids), 'field')}", layer.rows(ids), layer.rows([]))


def merge(layer: EditableLayer, ids: Iterable[int]) -> Edit:
    """One field (new id, status `edited`) from fields that touch along edges; its
    confidence is their area-weighted mean."""
    ids = _selection(layer, ids, 2, "merge")
    rows = layer.rows(ids)
    union = shapely.union_all(rows.geoms)
    if union.geom_type != "Polygon":
        raise EditError("the fields to merge must touch along an edge")
    weights = rows.columns["area_ha"] * np.isfinite(rows.columns["confidence"])
    confidence = (float(np.nansum(rows.columns["confidence"] * weights) / weights.sum())
                  if weights.sum() > 0 else np.nan)
    fitted = settle(layer, [(layer.next_id(), union)], gone=ids, clip=False)
    return commit(layer, f"Merge {len(ids)} fields", fitted, "edited", ids, confidence, ids)


def split(layer: EditableLayer, field_id: int, line: Sequence[Point]) -> Edit:
    """Cut a field along a polyline that crosses it from edge to edge; each part is a new
    field (status `edited`, the field's confidence)."""
    polygon = layer.geometry(field_id)
    parts = shapely.get_parts(shapely.ops.split(polygon, shapely.LineString(line)))
    if len(parts) < 2:
        raise EditError("the line must cross the field from edge to edge")
    first = layer.next_id()
    fitted = settle(layer, [(first + k, part) for k, part in enumerate(parts)],
                    gone=[field_id], clip=False)
    confidence = float(layer.rows([field_id]).columns["confidence"][0])
    return commit(layer, "Split a field", fitted, "edited", [field_id], confidence,
                  [field_id])


def draw(layer: EditableLayer, ring: Sequence[Point], snap: float = 0.0) -> Edit:
    """A new field (status `drawn`) from the vertices of its outline, each snapped to the
    nearest field vertex or edge within `snap` (map units), clipped by the fields it
    overlaps."""
    vertices = [snap_point(layer, xy, snap) for xy in ring]
    if len(set(vertices)) < 3:
        raise EditError("a field needs at least three vertices")
    fitted = settle(layer, [(layer.next_id(), shapely.Polygon(vertices))])
    return commit(layer, "Draw a field", fitted, "drawn")


def _moved(layer: EditableLayer, field_id: int, vertex: Point, pick: float,
           to: Point | None, snap: float = 0.0) -> Edit:
    """Move (to a point) or delete (`to` None) the vertex of a field nearest to `vertex`
    within `pick`, in every field that shares it; the changed fields are clipped by the
    others, the picked field first."""
    tolerance = node_tolerance(layer)
    at = nearest_vertex(layer.geometry(field_id), vertex, max(pick, tolerance))
    sharing = [field_id, *(int(i) for i in sharing_vertex(layer, at, tolerance)
                           if i != field_id)]
    target = snap_point(layer, to, snap, sharing) if to is not None else None
    changed = [(fid, replace_vertex(layer.geometry(fid), at, target, tolerance))
               for fid in sharing]
    text = "Move a vertex" if to is not None else "Delete a vertex"
    return commit(layer, text, settle(layer, changed), "edited")


def move_vertex(layer: EditableLayer, field_id: int, vertex: Point, to: Point,
                pick: float = 0.0, snap: float = 0.0) -> Edit:
    """Drag the vertex of `field_id` nearest to `vertex` (within `pick`) to `to`, snapped
    to other fields within `snap`; neighbours that share the vertex move with it."""
    return _moved(layer, field_id, vertex, pick, to, snap)


def delete_vertex(layer: EditableLayer, field_id: int, vertex: Point,
                  pick: float = 0.0) -> Edit:
    """Remove the vertex of `field_id` nearest to `vertex` (within `pick`), from the
    neighbours that share it too."""
    return _moved(layer, field_id, vertex, pick, None)


def insert_vertex(layer: EditableLayer, field_id: int, xy: Point, pick: float = 0.0) -> Edit:
    """Add a vertex on the edge of `field_id` nearest to `xy` (within `pick`), and on the
    neighbours' edges that run through it, so shared edges stay shared (status `edited`)."""
    tolerance = node_tolerance(layer)
    edges = layer.geometry(field_id).boundary
    point = shapely.line_interpolate_point(edges, shapely.line_locate_point(
        edges, shapely.Point(xy)))
    if point.distance(shapely.Point(xy)) > max(pick, tolerance):
        raise EditError("no edge of the field there")
    if len(sharing_vertex(layer, (point.x, point.y), tolerance)):
        raise EditError("there is a vertex there already")
    at = fields_near(layer, point, tolerance)
    ids = [int(i) for i in layer.ids[at]]
    snapped = shapely.snap(layer.geoms[at], point, tolerance)
    return Edit("Add a vertex", layer.rows(ids), layer.with_geometries(ids, snapped, "edited"))


def confirm(layer: EditableLayer, ids: Iterable[int]) -> Edit:
    """Mark fields as checked (status `confirmed`)."""
    ids = _selection(layer, ids, 1, "confirm")
    return Edit(f"Confirm {_plural(len(ids), 'field')}", layer.rows(ids),
                layer.with_status(ids, "confirmed"))


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    parts = shapely.get_parts(shapely.get_parts(shapely.make_valid(geom)))
    return shapely.union_all(parts[shapely.get_type_id(parts) == shapely.GeometryType.POLYGON])


def _reviewed(layer: EditableLayer, text: str, area: Sequence[Point] | shapely.Geometry,
              combine: Callable[[shapely.Geometry, shapely.Geometry], shapely.Geometry]
              ) -> Edit:
    polygon = _polygonal(area if isinstance(area, shapely.Geometry) else shapely.Polygon(area))
    nothing = layer.rows([])
    return Edit(text, nothing, nothing,
                (layer.reviewed, _polygonal(combine(layer.reviewed, polygon))))


def mark_reviewed(layer: EditableLayer, area: Sequence[Point] | shapely.Geometry) -> Edit:
    """Add an area (outline or polygon) to the reviewed areas, where the fields are the
    truth for training."""
    return _reviewed(layer, "Mark reviewed", area, shapely.union)


def unmark_reviewed(layer: EditableLayer, area: Sequence[Point] | shapely.Geometry) -> Edit:
    """Take an area out of the reviewed areas."""
    return _reviewed(layer, "Unmark reviewed", area, shapely.difference)
