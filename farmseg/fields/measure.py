"""Field measurements in true ground units for any CRS (geodesic for geographic CRS)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Geod


def areas_perimeters_m(geoms: np.ndarray, crs: CRS | None) -> tuple[np.ndarray, np.ndarray]:
    """Area (m²) and perimeter (m) of each geometry.

    Geographic CRS: geodesic on the CRS ellipsoid. Projected CRS: planar, in metres via
    the CRS's linear unit. No CRS: pixel units are returned as they are.
    """
    if len(geoms) == 0:
        return np.zeros(0), np.zeros(0)
    if crs is not None and crs.is_geographic:
        geod = _geod(crs.to_wkt())
        pairs = [geod.geometry_area_perimeter(g) for g in geoms]
        return (np.abs(np.array([p[0] for p in pairs])), np.array([p[1] for p in pairs]))
    factor = _unit_factor(crs.to_wkt()) if crs is not None else 1.0
    return shapely.area(geoms) * factor ** 2, shapely.length(geoms) * factor


@lru_cache(maxsize=32)
def _unit_factor(wkt: str) -> float:
    """Metres per CRS unit of a projected CRS."""
    axes = CRS.from_wkt(wkt).axis_info
    return axes[0].unit_conversion_factor if axes else 1.0


@lru_cache(maxsize=32)
def _geod(wkt: str) -> Geod:
    return CRS.from_wkt(wkt).get_geod() or Geod(ellps="WGS84")


def compactness(area: np.ndarray, perimeter: np.ndarray) -> np.ndarray:
    """Polsby-Popper shape index 4·pi·A / P² (1 for a circle, ~0.785 for a square)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 4 * math.pi * area / perimeter ** 2
    return np.nan_to_num(value)
