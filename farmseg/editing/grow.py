"""Grow a field from the model's probabilities around a click, as the pipeline grows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio import features
from rasterio.transform import Affine
from rasterio.windows import Window
from scipy import ndimage

from farmseg.editing.geometry import fields_near, settle
from farmseg.editing.history import Edit
from farmseg.editing.layer import EditableLayer, EditError
from farmseg.editing.ops import Point, commit
from farmseg.fields.clean import SIMPLIFY_PX
from farmseg.fields.polygonize import polygonize
from farmseg.fields.vectorize import (
    FOUR_CONNECTED,
    VectorizeSettings,
    class_masks,
    grow_seeds,
    pixels_to_map,
)
from farmseg.geoio.raster import PROB_SCALE

GROW_WINDOW_PX = 1024


def grown_pixels(probs: np.ndarray, pixel: tuple[int, int], taken: np.ndarray,
                 settings: VectorizeSettings) -> np.ndarray:
    """The field under `pixel` (row, col) of uint8 probabilities (background, field,
    boundary; 0..PROB_SCALE): the seeds of the connected field extent the pixel is in,
    less the pixels `taken` by fields, grown over that extent as `settings.method` says;
    the 4-connected part of the pixel's seed region (the whole extent part without seeds)."""
    extent, seeds = class_masks(probs, settings)
    extent &= ~taken
    if not extent[pixel]:
        raise EditError("the model sees no field here")
    parts, _ = ndimage.label(extent, FOUR_CONNECTED)
    here = parts == parts[pixel]
    markers = ndimage.label(seeds & here, FOUR_CONNECTED)[0].astype(np.int32)
    grown = grow_seeds(markers, here, settings.method, probs[2])
    mine = grown == grown[pixel] if grown[pixel] else here
    pieces, _ = ndimage.label(mine, FOUR_CONNECTED)
    return pieces == pieces[pixel]


def grow_field(layer: EditableLayer, probs: np.ndarray, transform: Affine, xy: Point,
               settings: VectorizeSettings | None = None,
               simplify_px: float = SIMPLIFY_PX) -> Edit:
    """A new field (status `drawn`) where the user clicked in an area with no field: the
    field the model's probabilities (a window, `transform` its geotransform) grow around
    the click, polygonized along pixel edges, simplified by `simplify_px` pixels and
    clipped by the existing fields; its confidence is its mean P(field or boundary)."""
    settings = settings or VectorizeSettings()
    if layer.field_at(*xy) is not None:
        raise EditError("there is a field here already")
    col, row = (int(np.floor(v)) for v in ~transform * xy)
    height, width = probs.shape[1:]
    if not (0 <= row < height and 0 <= col < width):
        raise EditError("the click is outside the probabilities")
    bounds = shapely.box(*rasterio.windows.bounds(Window(0, 0, width, height), transform))
    near = layer.geoms[fields_near(layer, bounds, 0.0)]
    taken = (features.geometry_mask(near, (height, width), transform, invert=True)
             if len(near) else np.zeros((height, width), bool))
    mine = grown_pixels(probs, (row, col), taken, settings)
    polygon = pixels_to_map(polygonize(mine.astype(np.int32), 0)[0], transform)[0]
    if simplify_px > 0:
        tolerance = simplify_px * float(np.hypot(transform.a, transform.d))
        polygon = shapely.coverage_simplify(polygon, tolerance, simplify_boundary=True)
    confidence = float(np.mean(PROB_SCALE - probs[0][mine]) / PROB_SCALE)
    fitted = settle(layer, [(layer.next_id(), polygon)])
    return commit(layer, "Grow a field", fitted, "drawn", confidence=confidence)


def grow_field_from_raster(layer: EditableLayer, prob_path: Path, xy: Point,
                           settings: VectorizeSettings | None = None,
                           window_px: int = GROW_WINDOW_PX) -> Edit:
    """`grow_field` on a window of `window_px` pixels around the click, read from the
    probability raster the pipeline writes (same grid as the fields)."""
    with rasterio.open(prob_path) as src:
        row, col = src.index(*xy)
        if not (0 <= row < src.height and 0 <= col < src.width):
            raise EditError("the click is outside the probabilities")
        window = Window(col - window_px // 2, row - window_px // 2, window_px, window_px)
        window = window.intersection(Window(0, 0, src.width, src.height))
        probs = src.read(window=window)
        transform = src.window_transform(window)
    return grow_field(layer, probs, transform, xy, settings)
