"""Items drawn over the fields: the reviewed areas' hatch and the editing tools' previews."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsRectItem

from farmseg.gui.items import REVIEWED_COLOR, SELECTED_COLOR

PREVIEW_Z = 1e6  # above every layer
MARKER_PX = 4.0  # half the side of a vertex marker, screen pixels


def _pen(color: QColor, width: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(color, width, style)
    pen.setCosmetic(True)
    return pen


class ReviewedItem(QGraphicsPathItem):
    """The reviewed areas: a hatch with a dashed outline (child of a field layer's item)."""

    def __init__(self) -> None:
        super().__init__()
        color = QColor(REVIEWED_COLOR)
        color.setAlpha(170)
        self.setPen(_pen(REVIEWED_COLOR, 1.5, Qt.PenStyle.DashLine))
        self.setBrush(QBrush(color, Qt.BrushStyle.BDiagPattern))
        self.setZValue(-1)  # under the field outlines


class Preview(QGraphicsPathItem):
    """What a tool is drawing: a polyline (closed for polygons) and its vertices, in
    scene coordinates; `scale` (screen pixels per scene unit) sizes the markers."""

    def __init__(self) -> None:
        super().__init__()
        self.setPen(_pen(SELECTED_COLOR, 2.0, Qt.PenStyle.DashLine))
        fill = QColor(SELECTED_COLOR)
        fill.setAlpha(40)
        self.setBrush(fill)
        self.setZValue(PREVIEW_Z)

    def show_points(self, points: list[QPointF], closed: bool, scale: float) -> None:
        path = QPainterPath()
        if points:
            polygon = QPolygonF(points + ([points[0]] if closed and len(points) > 2 else []))
            path.addPolygon(polygon)
            if not closed:
                self.setBrush(Qt.BrushStyle.NoBrush)
            half = MARKER_PX / max(scale, 1e-12)
            for point in points:
                path.addRect(QRectF(point.x() - half, point.y() - half, 2 * half, 2 * half))
        self.setPath(path)


class RubberBand(QGraphicsRectItem):
    """The selection rectangle of a drag."""

    def __init__(self) -> None:
        super().__init__()
        self.setPen(_pen(SELECTED_COLOR, 1.0, Qt.PenStyle.DashLine))
        fill = QColor(SELECTED_COLOR)
        fill.setAlpha(30)
        self.setBrush(fill)
        self.setZValue(PREVIEW_Z)
