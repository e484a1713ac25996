"""Numpy arrays, shapely polygons and geotransforms -> Qt value types.

Only value types (QImage, QPainterPath, QTransform) are made here, so these functions are
safe in worker threads. Scene coordinates are map coordinates with y multiplied by
`sign` (-1 for north-up rasters, so north is up on screen).
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from PySide6.QtCore import QPointF, Qt
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


def polygon_path(polygon: shapely.Polygon, sign: float) -> QPainterPath:
    """A polygon with its holes as a path in scene coordinates."""
    path = QPainterPath()
    path.setFillRule(Qt.FillRule.OddEvenFill)
    for ring in (polygon.exterior, *polygon.interiors):
        coords = shapely.get_coordinates(ring)
        path.addPolygon(QPolygonF([QPointF(x, sign * y) for x, y in coords]))
    return path
