"""Read polygon files (GeoJSON, Shapefile, GeoPackage, ...) and reproject geometries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely

from farmseg.errors import InputError


def read_polygons(path: Path) -> tuple[np.ndarray, str | None]:
    """All polygon geometries of a vector file and its CRS (WKT or 'EPSG:n'; None if unset)."""
    import pyogrio

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        meta, _, wkb, _ = pyogrio.raw.read(path)
    except Exception as exc:
        first_line = str(exc).splitlines()[0]
        raise InputError(path, f"cannot read as a vector file ({first_line})") from None
    geoms = shapely.from_wkb(wkb) if wkb is not None else np.array([], dtype=object)
    keep = np.array([g is not None and not g.is_empty and g.geom_type in
                     ("Polygon", "MultiPolygon") for g in geoms], dtype=bool)
    geoms = geoms[keep] if len(geoms) else geoms
    crs = meta.get("crs")
    if crs is None and path.suffix.lower() in (".geojson", ".json"):
        crs = "EPSG:4326"  # RFC 7946
    return shapely.make_valid(geoms) if len(geoms) else geoms, crs


def reproject(geoms: np.ndarray, source_crs, target_crs) -> np.ndarray:
    """Reproject geometries between two CRS descriptions (anything pyproj accepts)."""
    from pyproj import CRS, Transformer

    if source_crs is None or target_crs is None:
        return geoms
    src, dst = CRS.from_user_input(source_crs), CRS.from_user_input(target_crs)
    if src == dst:
        return geoms
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geoms, lambda xy: np.column_stack(
        transformer.transform(xy[:, 0], xy[:, 1])))
