"""Clean raw field polygons and attach their measurements.

Geometry is a coverage (neighbours share edges exactly, vertex for vertex): it is simplified
once for all neighbours with GEOS coverage simplification, so smoothing never opens gaps or
overlaps.
"""

from __future__ import annotations

import datetime as _dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import shapely
from pyproj import CRS

from farmseg.fields.measure import areas_perimeters_m, compactness
from farmseg.fields.vectorize import RawFields, components
from farmseg.jobs import cpu_threads

SIMPLIFY_PX = 1.0
M2_PER_HA = 10_000.0
ATTRIBUTES = ("field_id", "area_ha", "perim_m", "confidence", "compact", "source", "model",
              "created")


@dataclass
class CleanSettings:
    min_area_ha: float = 0.1
    min_hole_ha: float = 0.1
    simplify_px: float = SIMPLIFY_PX


@dataclass
class FieldLayer:
    """Field polygons in `crs` and their attribute columns (same order)."""

    geoms: np.ndarray
    columns: dict[str, np.ndarray]
    crs: CRS | None
    meta: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.geoms)

    @property
    def total_area_ha(self) -> float:
        return float(np.sum(self.columns["area_ha"])) if len(self) else 0.0


def _area_ha(geoms: np.ndarray, crs) -> np.ndarray:
    return areas_perimeters_m(geoms, crs)[0] / M2_PER_HA


def _fill_small_holes(geoms: np.ndarray, crs, min_hole_ha: float) -> np.ndarray:
    """Drop interior rings under `min_hole_ha` unless another field lies inside them."""
    if min_hole_ha <= 0 or len(geoms) == 0:
        return geoms
    counts = shapely.get_num_interior_rings(geoms)
    owners = np.repeat(np.arange(len(geoms)), counts)
    if len(owners) == 0:
        return geoms
    rings = np.array([shapely.get_interior_ring(geoms[i], k) for i, n in enumerate(counts)
                      for k in range(n)], dtype=object)
    holes = shapely.polygons(rings)
    small = _area_ha(holes, crs) < min_hole_ha
    occupied = np.zeros(len(holes), bool)
    hits = shapely.STRtree(shapely.point_on_surface(geoms)).query(holes, predicate="contains")
    occupied[hits[0]] = True
    fill = small & ~occupied
    out = geoms.copy()
    for index in np.unique(owners[fill]):
        keep = rings[(owners == index) & ~fill]
        out[index] = shapely.Polygon(geoms[index].exterior, list(keep))
    return out


def _polygons_only(geoms: np.ndarray) -> np.ndarray:
    """Make every geometry a valid single Polygon (largest part if repair splits it)."""
    bad = np.flatnonzero(~shapely.is_valid(geoms) |
                         (shapely.get_type_id(geoms) != shapely.GeometryType.POLYGON))
    if len(bad) == 0:
        return geoms
    parts, index = shapely.get_parts(shapely.make_valid(geoms[bad]), return_index=True)
    parts, inner = shapely.get_parts(parts, return_index=True)  # collections of multipolygons
    index = index[inner]
    polygon = shapely.get_type_id(parts) == shapely.GeometryType.POLYGON
    parts, index = parts[polygon], index[polygon]
    largest = np.lexsort((-shapely.area(parts), index))
    largest = largest[np.concatenate([[True], np.diff(index[largest]) != 0])]
    out = geoms.copy()
    out[bad] = shapely.Polygon()
    out[bad[index[largest]]] = parts[largest]
    return out


def _simplify(geoms: np.ndarray, tolerance: float) -> np.ndarray:
    """Coverage simplification (shared edges stay shared), group by group on a thread
    pool: GEOS removes a vertex only if its triangle holds no other vertex, so polygons
    whose bounding boxes are apart cannot change each other's result, while its time
    grows faster than the size of the coverage. GEOS releases the GIL."""
    groups = _groups_of_touching_boxes(geoms)
    out = np.empty_like(geoms)
    with ThreadPoolExecutor(cpu_threads()) as pool:
        done = pool.map(lambda group: shapely.coverage_simplify(
            geoms[group], tolerance, simplify_boundary=True), groups)
        for group, simplified in zip(groups, done):
            out[group] = simplified
    return out


def _groups_of_touching_boxes(geoms: np.ndarray) -> list[np.ndarray]:
    """Indices of the groups of geometries linked by meeting bounding boxes, each in order."""
    boxes = shapely.envelope(geoms)
    group = components(len(geoms), shapely.STRtree(boxes).query(boxes))
    order = np.argsort(group, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(group[order])) + 1)


def clean_fields(raw: RawFields, settings: CleanSettings, source: str = "",
                 model: str = "") -> FieldLayer:
    """Drop small fields, fill small holes, simplify shared edges, measure.

    Without a CRS, areas are in pixel units (1 px counted as 1 m²).
    """
    crs = raw.grid.crs
    geoms, confidence = raw.geoms, raw.confidence
    if len(geoms):
        large = _area_ha(geoms, crs) >= settings.min_area_ha
        geoms, confidence = geoms[large], confidence[large]
    geoms = _fill_small_holes(geoms, crs, settings.min_hole_ha)
    if len(geoms) and settings.simplify_px > 0:
        geoms = _simplify(geoms, settings.simplify_px * raw.grid.pixel_size[0])
    geoms = _polygons_only(geoms) if len(geoms) else geoms
    area, perimeter = areas_perimeters_m(geoms, crs)
    keep = np.flatnonzero(~shapely.is_empty(geoms) & (area / M2_PER_HA >= settings.min_area_ha))
    keep = keep[_stable_order(geoms[keep])]
    geoms, confidence, area, perimeter = geoms[keep], confidence[keep], area[keep], perimeter[keep]
    n = len(geoms)
    created = _dt.date.today().isoformat()
    columns = {
        "field_id": np.arange(1, n + 1, dtype=np.int32),
        "area_ha": np.round(area / M2_PER_HA, 4),
        "perim_m": np.round(perimeter, 1),
        "confidence": np.round(confidence.astype(float), 3),
        "compact": np.round(compactness(area, perimeter), 3),
        "source": np.array([source] * n, dtype=object),
        "model": np.array([model] * n, dtype=object),
        "created": np.array([created] * n, dtype=object),
    }
    units = "m" if crs is not None else "px"
    return FieldLayer(geoms, columns, crs, {"units": units})


def _stable_order(geoms: np.ndarray) -> np.ndarray:
    """North to south, then west to east, by a point inside each field."""
    if len(geoms) == 0:
        return np.zeros(0, dtype=int)
    points = shapely.point_on_surface(geoms)
    x, y = shapely.get_x(points), shapely.get_y(points)
    return np.lexsort((np.round(x, 6), -np.round(y, 6)))
