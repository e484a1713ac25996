"""Write a field layer as GeoJSON, Shapefile, GeoPackage, KML or a CSV summary."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import shapely

from farmseg.errors import OutputError, UsageError
from farmseg.fields.clean import ATTRIBUTES, FieldLayer
from farmseg.geoio.atomic import atomic_file, atomic_fileset
from farmseg.geoio.vectors import reproject

FORMATS = {  # suffix -> (GDAL driver, needs WGS84, layer options)
    ".geojson": ("GeoJSON", True, {"RFC7946": "YES", "WRITE_NAME": "NO"}),
    ".json": ("GeoJSON", True, {"RFC7946": "YES", "WRITE_NAME": "NO"}),
    ".shp": ("ESRI Shapefile", False, {"ENCODING": "UTF-8"}),
    ".gpkg": ("GPKG", False, {}),
    ".kml": ("KML", True, {}),
}
VECTOR_FILTER = "GeoJSON (*.geojson);;Shapefile (*.shp);;GeoPackage (*.gpkg);;KML (*.kml)"


def check_format(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS and suffix != ".csv":
        raise UsageError(path, f"unknown output format '{suffix}' (use .geojson, .shp, .gpkg "
                         "or .kml)")
    return suffix


def check_layer_exportable(layer_crs, path: Path) -> None:
    """Geographic formats need a CRS to reproject from."""
    suffix = check_format(path)
    if suffix in FORMATS and FORMATS[suffix][1] and layer_crs is None:
        raise UsageError(path, "the raster has no CRS, so WGS84 formats (GeoJSON, KML) cannot "
                         "be written; give the CRS with --crs or write .gpkg/.shp")


def write_fields(layer: FieldLayer, path: Path) -> Path:
    """Write `layer` to `path` (format from the suffix), atomically."""
    path = Path(path)
    suffix = check_format(path)
    if suffix == ".csv":
        return write_summary_csv(layer, path)
    check_layer_exportable(layer.crs, path)
    driver, wgs84, options = FORMATS[suffix]
    geoms = layer.geoms
    crs_text: str | None = None if layer.crs is None else layer.crs.to_wkt()
    if wgs84 and crs_text is not None:  # always set: checked above
        geoms = reproject(geoms, crs_text, "EPSG:4326")
        crs_text = "EPSG:4326"
    names = list(ATTRIBUTES)
    data = [np.asarray(layer.columns[name]) for name in names]
    writer = atomic_fileset if suffix == ".shp" else atomic_file
    import pyogrio

    with writer(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided")  # pixel units, said above
        try:
            pyogrio.raw.write(tmp, geometry=shapely.to_wkb(geoms) if len(geoms) else
                              np.array([], dtype=object), field_data=data, fields=names,
                              crs=crs_text, driver=driver, geometry_type="Polygon",
                              layer="fields" if suffix == ".gpkg" else None,
                              layer_options=options or None)
        except Exception as exc:
            if isinstance(exc, OSError):
                raise
            raise OutputError(path, f"cannot write {driver} ({str(exc).splitlines()[0]})") \
                from None
    return path


def write_summary_csv(layer: FieldLayer, path: Path) -> Path:
    """One row per field: attributes plus a point inside the field in lon/lat (or CRS units)."""
    points = shapely.point_on_surface(layer.geoms) if len(layer) else np.array([])
    if layer.crs is not None and len(points):
        points = reproject(points, layer.crs.to_wkt(), "EPSG:4326")
    with atomic_file(Path(path)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(ATTRIBUTES) + ["x", "y"])
        for i in range(len(layer)):
            row = [layer.columns[name][i] for name in ATTRIBUTES]
            writer.writerow(row + [round(points[i].x, 7), round(points[i].y, 7)])
    return Path(path)
