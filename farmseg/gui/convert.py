"""Numpy arrays, shapely polygons and geotransforms -> Qt value types.

Only value types (QImage, QPainterPath, QTransform) are made here, so these functions are
safe in worker threads. Scene coordinates are map coordinates with y multiplied by
`sign` (-1 for north-up rasters, so north is up on screen).
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QImage, QPainterPath, QPolygonF, QTransform


def to_qimage(rgba: np.ndarray) -> QImage:
    """(rows, cols, 4) uint8 RGBA -> an independent premultiplied QImage (fast to draw)."""
    rows, cols, _ = rgba.shape
    rgba = np.ascontiguousarray(rgba)
    image = QImage(rgba.data, cols, rows, 4 * cols, QImage.Format.Format_RGBA8888)
    return image.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)


def scene_transform(transform: Affine, sign: float) -> QTransform:
    """Raster pixel (col, row) -> scene point, for a geotransform."""
    t = transform
    return QTransform(t.a, sign * t.d, t.b, sign * t.e, t.c, sign * t.f)


def _polygons(geom: shapely.Geometry) -> list[shapely.Polygon]:
    """The polygons of a polygon, multipolygon or geometry collection."""
    if geom.geom_type == "Polygon":
        return [geom]
    return [polygon for part in getattr(geom, "geoms", ()) for polygon in _polygons(part)]


def polygon_path(geom: shapely.Geometry, sign: float) -> QPainterPath:
    """A (multi)polygon with its holes as a path in scene coordinates."""
    path = QPainterPath()
    path.setFillRule(Qt.FillRule.OddEvenFill)
    for polygon in _polygons(geom):
        for ring in (polygon.exterior, *polygon.interiors):
            coords = shapely.get_coordinates(ring)
            path.addPolygon(QPolygonF([QPointF(x, sign * y) for x, y in coords]))
    return path


def scene_bounds(geoms: np.ndarray, sign: float) -> QRectF:
    """The scene rectangle around all `geoms` (empty for none)."""
    if len(geoms) == 0:
        return QRectF()
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    return QRectF(x0, min(sign * y0, sign * y1), x1 - x0, abs(y1 - y0))
