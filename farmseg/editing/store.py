"""Read and save editable layers: a GeoPackage holds `fields` (status included) and the
`reviewed` areas, written together all-or-nothing."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS

from farmseg.editing.layer import EditableLayer, from_field_layer, to_field_layer
from farmseg.errors import InputError, OutputError, UsageError
from farmseg.fields.clean import FieldLayer
from farmseg.fields.export import write_fields
from farmseg.geoio.atomic import atomic_file
from farmseg.geoio.vectors import reproject

FIELDS_LAYER = "fields"
REVIEWED_LAYER = "reviewed"


def layer_names(path: Path) -> list[str]:
    """Names of the layers of a vector file."""
    import pyogrio

    try:
        return [str(name) for name in pyogrio.list_layers(path)[:, 0]]
    except Exception as exc:
        raise InputError(path, f"cannot read as a vector file ({str(exc).splitlines()[0]})") \
            from None


def read_layer(path: Path, layer: str | None = None
               ) -> tuple[np.ndarray, dict[str, np.ndarray], str | None]:
    """Geometries (none missing or empty), attribute columns and CRS (None if unset;
    WGS84 for GeoJSON) of one layer of a vector file (`layer` None: `fields` if there is
    one, else the first)."""
    import pyogrio

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    names = layer_names(path)
    name = layer if layer is not None else FIELDS_LAYER if FIELDS_LAYER in names else names[0]
    if name not in names:
        raise InputError(path, f"has no layer '{name}'")
    meta, _, wkb, data = pyogrio.raw.read(path, layer=name)
    geoms = shapely.from_wkb(wkb) if wkb is not None else np.array([], dtype=object)
    present = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    crs = meta.get("crs")
    if crs is None and path.suffix.lower() in (".geojson", ".json"):
        crs = "EPSG:4326"  # RFC 7946
    return geoms[present], {k: v[present] for k, v in zip(meta["fields"], data)}, crs


def load_layer(path: Path) -> EditableLayer:
    """An editable layer from a vector file, with the reviewed areas of a GeoPackage's
    `reviewed` layer (in the fields' CRS); fields without a status are `predicted`."""
    geoms, columns, crs = read_layer(path)
    reviewed = shapely.MultiPolygon()
    if REVIEWED_LAYER in layer_names(path):
        areas, _, areas_crs = read_layer(path, REVIEWED_LAYER)
        parts = shapely.get_parts(shapely.make_valid(reproject(areas, areas_crs, crs)))
        reviewed = shapely.union_all(parts[shapely.get_type_id(parts) ==
                                           shapely.GeometryType.POLYGON])
    fields = FieldLayer(geoms, columns, CRS.from_user_input(crs) if crs else None)
    return from_field_layer(fields, reviewed)


def save_layer(layer: EditableLayer, path: Path) -> Path:
    """Save atomically. GeoPackage (the editing format): layers `fields` (every column)
    and `reviewed`. Other formats: `write_fields` (no reviewed areas there)."""
    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        if not layer.reviewed.is_empty:
            raise UsageError(path, "reviewed areas are saved only in a GeoPackage (.gpkg)")
        return write_fields(to_field_layer(layer), path)
    crs = layer.crs.to_wkt() if layer.crs is not None else None
    with atomic_file(path) as tmp:
        _write(tmp, path, FIELDS_LAYER, layer.geoms, dict(layer.columns), crs)
        _write(tmp, path, REVIEWED_LAYER, shapely.get_parts(layer.reviewed), {}, crs)
    return path


def _write(tmp: Path, path: Path, name: str, geoms: np.ndarray, columns: dict[str, np.ndarray],
           crs: str | None) -> None:
    """Add one polygon layer to the GeoPackage `tmp` (that becomes `path`)."""
    import pyogrio

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided")  # pixel units
        try:
            pyogrio.raw.write(tmp, geometry=shapely.to_wkb(geoms) if len(geoms) else
                              np.array([], dtype=object), field_data=list(columns.values()),
                              fields=list(columns), crs=crs, driver="GPKG",
                              geometry_type="Polygon", layer=name)
        except Exception as exc:
            if isinstance(exc, OSError):
                raise
            raise OutputError(path, f"cannot write GeoPackage ({str(exc).splitlines()[0]})") \
                from None
