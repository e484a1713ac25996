"""Training labels from corrected fields: inside the reviewed areas the field layer is the
truth (field, boundary band, background); outside them the loss ignores the pixels.

Folder convention: `images/NAME.tif`, `fields/NAME.(gpkg|geojson|shp)` and, optionally,
`reviewed/NAME.(gpkg|geojson|shp)` or a layer `reviewed` in `fields/NAME.gpkg`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyproj import CRS as ProjCRS
from rasterio import features
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.windows import Window, from_bounds

from farmseg.editing.layer import EditableLayer
from farmseg.editing.store import REVIEWED_LAYER, layer_names, read_layer, save_layer
from farmseg.errors import UsageError
from farmseg.geoio.raster import write_window
from farmseg.geoio.vectors import reproject
from farmseg.training.labels import boundary_from_instances

REVIEWED_SUFFIXES = (".gpkg", ".geojson", ".shp")
EPSILON = 1e-6  # px: bounds that miss a pixel edge by rounding noise meet it


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


def _grown(start: int, stop: int, size: int, limit: int) -> slice:
    """[start, stop) widened evenly to at least `size` pixels (at most `limit`), kept
    within 0..limit."""
    length = max(stop - start, min(size, limit))
    start = min(max(0, start - (length - (stop - start)) // 2), limit - length)
    return slice(start, start + length)


def reviewed_window(valid: np.ndarray, min_size: int) -> tuple[slice, slice]:
    """(rows, cols) of the extent of the `valid` pixels, at least `min_size` a side where
    the image allows: the part of an image that a reviewed sample keeps."""
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    h, w = valid.shape
    return (_grown(int(rows[0]), int(rows[-1]) + 1, min_size, h),
            _grown(int(cols[0]), int(cols[-1]) + 1, min_size, w))


def crop_image(image: Path, bounds: tuple[float, float, float, float], target: Path,
               min_size: int) -> Path:
    """The whole pixels of `image` over `bounds` (its CRS; at least `min_size` a side where
    the image allows) written to the GeoTIFF `target`, nodata and band descriptions kept."""
    with rasterio.open(image) as src:
        window = from_bounds(*bounds, transform=src.transform)
        rows = _grown(max(0, math.floor(window.row_off + EPSILON)),
                      min(src.height, math.ceil(window.row_off + window.height - EPSILON)),
                      min_size, src.height)
        cols = _grown(max(0, math.floor(window.col_off + EPSILON)),
                      min(src.width, math.ceil(window.col_off + window.width - EPSILON)),
                      min_size, src.width)
    return write_window(image, Window.from_slices(rows, cols), target)


def write_corrections_folder(image: Path, layer: EditableLayer, folder: Path,
                             name: str | None = None, min_size: int = 32) -> Path:
    """Corrections as training data: `images/NAME.tif` (the image cropped to the reviewed
    areas' extent) and `fields/NAME.gpkg` (layer `fields`: the fields that touch the
    reviewed areas; layer `reviewed`), in the image's CRS, in `folder` (NAME: the image's
    stem). Returns the image written."""
    if layer.reviewed.is_empty:
        raise UsageError(None, "nothing is marked as reviewed yet: mark the areas you checked "
                         "before exporting them as training data")
    name = name or Path(image).stem
    with rasterio.open(image) as src:
        crs = src.crs.to_wkt() if src.crs else None
    source = layer.crs.to_wkt() if layer.crs is not None else None
    areas = reproject(np.asarray([layer.reviewed]), source, crs)[0]
    near = layer.rows(layer.ids[np.sort(layer.tree.query(layer.reviewed,
                                                         predicate="intersects"))])
    exported = replace(near, geoms=reproject(near.geoms, source, crs), reviewed=areas,
                       crs=ProjCRS.from_user_input(crs) if crs else near.crs)
    for sub in ("images", "fields"):
        (Path(folder) / sub).mkdir(parents=True, exist_ok=True)
    picture = crop_image(Path(image), tuple(shapely.bounds(areas).tolist()),
                         Path(folder) / "images" / f"{name}.tif", min_size)
    save_layer(exported, Path(folder) / "fields" / f"{name}.gpkg")
    return picture
