"""Geometry for edits: snapping, clipping by neighbours, shared vertices, coverage checks.

A clean coverage here: every field a valid single polygon, no two overlapping by more than
a tiny area, and neighbours sharing their edges vertex for vertex (shapely's coverage
validity), so that coverage simplification and merges leave no slivers.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import shapely
from scipy.spatial import cKDTree

from farmseg.editing.layer import EditableLayer, EditError
from farmseg.fields.vectorize import components

NODE_RELATIVE = 1e-12  # vertices closer than this times the coordinates' size are one


def node_tolerance(layer: EditableLayer) -> float:
    """Distance under which two vertices (or a vertex and an edge) count as one place."""
    size = np.abs(shapely.total_bounds(layer.geoms)).max(initial=0.0) if len(layer) else 0.0
    return NODE_RELATIVE * max(1.0, float(size))


def one_polygon(geom: shapely.Geometry) -> shapely.Polygon:
    """The largest polygon of a geometry made valid (empty if it has none)."""
    parts = shapely.get_parts(shapely.make_valid(geom))
    parts = shapely.get_parts(parts)  # parts of collections
    polygons = parts[shapely.get_type_id(parts) == shapely.GeometryType.POLYGON]
    return polygons[np.argmax(shapely.area(polygons))] if len(polygons) else shapely.Polygon()


def fields_near(layer: EditableLayer, geom: shapely.Geometry, distance: float,
          exclude: Iterable[int] = ()) -> np.ndarray:
    """Positions of fields within `distance` of `geom`, less the ids `exclude`."""
    at = layer.tree.query(geom, predicate="dwithin", distance=distance)
    return np.sort(at[~np.isin(layer.ids[at], list(exclude))])


def _xy(vertex: np.ndarray) -> tuple[float, float]:
    return float(vertex[0]), float(vertex[1])


def snap_point(layer: EditableLayer, xy: tuple[float, float], tolerance: float,
               exclude: Iterable[int] = ()) -> tuple[float, float]:
    """`xy` moved to the nearest field vertex within `tolerance`, else to the nearest point
    on a field edge within it, else left where it is (fields `exclude` ignored)."""
    point = shapely.Point(xy)
    at = fields_near(layer, point, tolerance, exclude)
    if tolerance <= 0 or not len(at):
        return xy
    vertices = shapely.get_coordinates(layer.geoms[at])
    distance = np.hypot(*(vertices - np.asarray(xy)).T)
    if distance.min() <= tolerance:
        return _xy(vertices[np.argmin(distance)])
    edges = shapely.boundary(layer.geoms[at])
    nearest = shapely.line_interpolate_point(edges, shapely.line_locate_point(edges, point))
    best = nearest[np.argmin(shapely.distance(nearest, point))]
    return (best.x, best.y) if best.distance(point) <= tolerance else xy


def nearest_vertex(geom: shapely.Geometry, xy: tuple[float, float], tolerance: float
                   ) -> tuple[float, float]:
    """The vertex of `geom` nearest to `xy`, if within `tolerance` (else EditError)."""
    vertices = shapely.get_coordinates(geom)
    distance = np.hypot(*(vertices - np.asarray(xy)).T)
    if not len(vertices) or distance.min() > tolerance:
        raise EditError("no vertex of the field there")
    return _xy(vertices[np.argmin(distance)])


def sharing_vertex(layer: EditableLayer, xy: tuple[float, float], tolerance: float
                   ) -> np.ndarray:
    """Ids of the fields with a vertex at `xy` (within `tolerance`)."""
    at = fields_near(layer, shapely.Point(xy), tolerance)
    has = [np.hypot(*(shapely.get_coordinates(layer.geoms[i]) - np.asarray(xy)).T).min()
           <= tolerance for i in at]
    return layer.ids[at[np.asarray(has, bool)]] if len(at) else layer.ids[:0]


def settle(layer: EditableLayer, changed: list[tuple[int, shapely.Geometry]],
           gone: Iterable[int] = (), clip: bool = True
           ) -> tuple[dict[int, shapely.Polygon], dict[int, shapely.Polygon]]:
    """Fit new geometries into the layer without the fields `gone`.

    Each of `changed` (id, geometry) becomes one valid polygon, clipped (if `clip`) by the
    fields it overlaps that do not change and by those before it in `changed`. Then shared
    places get the same vertices on both sides: each new polygon gets its neighbours'
    vertices that lie on its edges, and neighbours get its vertices on theirs. Returns the
    new polygons by id and the neighbours whose vertices changed, by id."""
    tolerance = node_tolerance(layer)
    moving = {fid for fid, _ in changed} | set(gone)
    done: dict[int, shapely.Polygon] = {}
    for fid, geom in changed:
        polygon = one_polygon(geom)
        if clip and not polygon.is_empty:
            others = [*layer.geoms[fields_near(layer, polygon, 0.0, moving)], *done.values()]
            polygon = one_polygon(polygon.difference(shapely.union_all(others)))
        if polygon.is_empty or polygon.area <= tolerance ** 2:
            raise EditError("nothing would be left of the field: it lies inside its neighbours")
        done[fid] = polygon
    new = shapely.GeometryCollection(list(done.values()))
    fixed = layer.geoms[fields_near(layer, new, tolerance, moving)]
    done = dict(zip(done, _merge_close_vertices(fixed, list(done.values()), tolerance)))
    new = shapely.GeometryCollection(list(done.values()))
    noded: dict[int, shapely.Polygon] = {}
    for i in fields_near(layer, new, tolerance, moving):
        snapped = one_polygon(shapely.snap(layer.geoms[i], new, tolerance))
        if not shapely.equals_exact(snapped, layer.geoms[i], 0.0):
            noded[int(layer.ids[i])] = snapped
    for fid, polygon in done.items():
        reference = [*layer.geoms[fields_near(layer, polygon, tolerance, moving)], *noded.values(),
                     *(other for key, other in done.items() if key != fid)]
        if reference:
            done[fid] = one_polygon(shapely.snap(polygon, shapely.GeometryCollection(reference),
                                                 tolerance))
    return done, noded


def _merge_close_vertices(fixed: np.ndarray, moving: list[shapely.Polygon], tolerance: float
                          ) -> np.ndarray:
    """`moving` polygons whose vertices within `tolerance` of others (chains of them) all
    take the coordinates of one: a vertex of `fixed` where there is one. Separate overlays
    compute one crossing a few units in the last place apart."""
    polygons = np.asarray(moving, dtype=object)
    xy = shapely.get_coordinates(np.concatenate([fixed, polygons]))
    pairs = cKDTree(xy).query_pairs(tolerance, output_type="ndarray")
    group = components(len(xy), pairs.T)
    _, first = np.unique(group, return_index=True)  # the lowest index: fixed vertices first
    merged = xy[first[group]][len(shapely.get_coordinates(fixed)):]
    return shapely.set_coordinates(polygons.copy(), merged)


def replace_vertex(geom: shapely.Polygon, old: tuple[float, float],
                   new: tuple[float, float] | None, tolerance: float) -> shapely.Polygon:
    """`geom` with its vertex at `old` moved to `new`, or removed where `new` is None."""
    rings = [geom.exterior, *geom.interiors]
    out = []
    for ring in rings:
        xy = np.asarray(ring.coords)[:-1]
        at = np.hypot(*(xy - np.asarray(old)).T) <= tolerance
        if new is None:
            xy = xy[~at]
            if len(xy) < 3:
                raise EditError("a field needs at least three vertices")
        else:
            xy[at] = new
        out.append(np.vstack([xy, xy[:1]]))
    return shapely.Polygon(out[0], out[1:])


def coverage_problems(layer: EditableLayer, overlap_area: float = 0.0) -> list[str]:
    """What keeps the layer from being a clean coverage (empty list: clean): invalid or
    non-polygon fields, overlaps over `overlap_area` (CRS units²), edges that neighbours
    do not share vertex for vertex."""
    problems = []
    geoms, ids = layer.geoms, layer.ids
    bad = ~shapely.is_valid(geoms) | (shapely.get_type_id(geoms) != shapely.GeometryType.POLYGON)
    problems += [f"field {ids[i]} is not a valid polygon" for i in np.flatnonzero(bad)]
    pairs = layer.tree.query(geoms, predicate="intersects")
    pairs = pairs[:, pairs[0] < pairs[1]]
    area = shapely.area(shapely.intersection(geoms[pairs[0]], geoms[pairs[1]]))
    problems += [f"fields {ids[a]} and {ids[b]} overlap by {s:.3g}"
                 for a, b, s in zip(*pairs, area) if s > overlap_area]
    if not bad.any() and len(geoms):
        edges = shapely.coverage_invalid_edges(geoms)
        problems += [f"field {ids[i]} has edges its neighbours do not share"
                     for i in np.flatnonzero(~shapely.is_empty(edges))]
    return problems
