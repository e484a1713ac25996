"""Training labels from corrected fields: inside the reviewed areas the field layer is the
truth (field, boundary band, background); outside them the loss ignores the pixels.

Folder convention: `images/NAME.tif`, `fields/NAME.(gpkg|geojson|shp)` and, optionally,
`reviewed/NAME.(gpkg|geojson|shp)` or a layer `reviewed` in `fields/NAME.gpkg`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio import features
from rasterio.crs import CRS
from rasterio.transform import Affine

from farmseg.editing.store import REVIEWED_LAYER, layer_names, read_layer
from farmseg.geoio.vectors import reproject
from farmseg.training.labels import boundary_from_instances

REVIEWED_SUFFIXES = (".gpkg", ".geojson", ".shp")


def find_reviewed(data_dir: Path, stem: str) -> tuple[Path, str | None] | None:
    """The reviewed areas of image `stem` in a training folder, as (file, layer): a file
    in `reviewed/` (its first layer), else the `reviewed` layer of `fields/stem.gpkg`;
    None when the image has none (all of it is labelled)."""
    for suffix in REVIEWED_SUFFIXES:
        candidate = Path(data_dir) / "reviewed" / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate, None
    fields = Path(data_dir) / "fields" / f"{stem}.gpkg"
    if fields.is_file() and REVIEWED_LAYER in layer_names(fields):
        return fields, REVIEWED_LAYER
    return None


def _rasterize(geoms: np.ndarray, shape: tuple[int, int], transform: Affine) -> np.ndarray:
    """Instance raster: geometry k (0-based) burns k + 1 where it covers pixel centres."""
    if not len(geoms):
        return np.zeros(shape, np.uint32)
    return features.rasterize([(g, i + 1) for i, g in enumerate(geoms)], out_shape=shape,
                              transform=transform, fill=0, dtype="uint32")


def correction_labels(fields: np.ndarray, reviewed: np.ndarray, shape: tuple[int, int],
                      transform: Affine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask 0/1/2, valid, instances) on an image grid from field polygons and reviewed
    areas in the image CRS: the 3-class mask as for any field polygons (boundary band
    from the polygon edges); valid only inside the reviewed areas."""
    instances = _rasterize(fields, shape, transform)
    valid = _rasterize(reviewed, shape, transform) > 0
    return boundary_from_instances(instances), valid, instances


def load_correction_labels(fields_path: Path, reviewed: tuple[Path, str | None],
                           shape: tuple[int, int], transform: Affine, crs: CRS | None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`correction_labels` from files (any CRS): the fields layer of `fields_path` and
    the reviewed areas (file, layer) as `find_reviewed` gives them."""
    target = crs.to_wkt() if crs is not None else None
    fields, _, fields_crs = read_layer(fields_path)
    areas, _, areas_crs = read_layer(*reviewed)
    return correction_labels(reproject(fields, fields_crs, target),
                             reproject(areas, areas_crs, target), shape, transform)
