"""Training labels: 3-class masks (0 background, 1 field, 2 boundary) from masks or polygons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

BOUNDARY_RADIUS = 2  # px each side of a field edge, as in the agoro-naip masks


def boundary_from_instances(instances: np.ndarray, radius: int = BOUNDARY_RADIUS) -> np.ndarray:
    """3-class mask: field pixels whose (2r+1)^2 neighbourhood holds another id become 2."""
    size = 2 * radius + 1
    high = ndimage.maximum_filter(instances, size=size, mode="nearest")
    low = ndimage.minimum_filter(instances, size=size, mode="nearest")
    mask = (instances > 0).astype(np.uint8)
    mask[(instances > 0) & ((high != instances) | (low != instances))] = 2
    return mask


def mask_from_binary(binary: np.ndarray) -> np.ndarray:
    """0/1 field mask -> 3 classes, the boundary derived from the field edges."""
    instances, _ = ndimage.label(binary > 0)
    return boundary_from_instances(instances)


def instances_from_polygons(vector_path: Path, shape: tuple[int, int], transform,
                            crs) -> np.ndarray:
    """Rasterize field polygons (any CRS) on an image grid -> instance raster (0 = none)."""
    from rasterio import features

    from farmseg.geoio.vectors import read_polygons, reproject

    geoms, source_crs = read_polygons(vector_path)
    geoms = reproject(geoms, source_crs, crs.to_wkt() if crs is not None else None)
    shapes = [(g, i + 1) for i, g in enumerate(geoms)]
    if not shapes:
        return np.zeros(shape, np.uint32)
    return features.rasterize(shapes, out_shape=shape, transform=transform, fill=0,
                              dtype="uint32")
