"""Graphics items for the map: rasters drawn from decimated images, field outlines."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsObject,
    QGraphicsPathItem,
    QStyleOptionGraphicsItem,
    QWidget,
)

from farmseg.gui.render import Style

FIELD_COLOR = QColor(255, 221, 0)
POLYGON_COLOR = QColor(90, 170, 255)  # outlines of vector layers (reference fields)
SELECTED_COLOR = QColor(0, 229, 255)
STATUS_COLORS = {"predicted": FIELD_COLOR, "edited": QColor(255, 140, 0),
                 "drawn": QColor(255, 80, 200), "confirmed": QColor(80, 220, 80)}
REVIEWED_COLOR = QColor(120, 255, 160)
FIELD_CHUNK = 400  # field items added per event-loop turn, so big results never freeze


class RasterItem(QGraphicsItem):
    """A raster in raster pixel coordinates (its transform places it in the scene).

    Drawn from one decimated image of the whole raster (the base, which may arrive later:
    a placeholder frame is drawn until then), plus, when zoomed in, a sharper image of the
    visible window (see DetailLoader).
    """

    def __init__(self, path: Path, width: int, height: int) -> None:
        super().__init__()
        self.path = path
        self.style: Style | None = None
        self._rect = QRectF(0, 0, width, height)
        self._base: QImage | None = None
        self._detail: tuple[QRectF, QImage] | None = None

    def boundingRect(self) -> QRectF:
        return self._rect

    @property
    def ready(self) -> bool:
        return self._base is not None

    def set_base(self, style: Style, base: QImage) -> None:
        self.style, self._base = style, base
        self.update()

    @property
    def base_resolution(self) -> float:
        """Base image pixels per raster pixel (1.0 when the raster is shown whole)."""
        return self._base.width() / self._rect.width() if self._base is not None else 0.0

    def visible_window(self, scene_rect: QRectF) -> tuple[int, int, int, int] | None:
        """(column, row, width, height) of the raster pixels inside `scene_rect`, or None."""
        visible = self.mapFromScene(scene_rect).boundingRect() & self._rect
        if visible.isEmpty():
            return None
        left, top = math.floor(visible.left()), math.floor(visible.top())
        return (left, top, math.ceil(visible.right()) - left, math.ceil(visible.bottom()) - top)

    def set_detail(self, rect: QRectF, image: QImage) -> None:
        self._detail = (rect, image)
        self.update()

    def clear_detail(self) -> None:
        if self._detail is not None:
            self._detail = None
            self.update()

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        if self._base is None:
            pen = QPen(FIELD_COLOR.darker(150), 1.0, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.drawRect(self._rect)
            return
        screen_px = option.levelOfDetailFromTransform(painter.worldTransform())
        layers = [(self._rect, self._base)] + ([self._detail] if self._detail else [])
        for rect, image in layers:
            # smooth when shrinking the image, crisp pixels when enlarging it
            smooth = screen_px * rect.width() < image.width()
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
            painter.drawImage(rect, image)


class FieldShape(QGraphicsPathItem):
    """One field outline; `key` names it in its layer (the field_id, or the row of a
    polygon file)."""

    def __init__(self, path: QPainterPath, key: int, parent: QGraphicsItem,
                 color: QColor = FIELD_COLOR) -> None:
        super().__init__(path, parent)
        self.key = key
        self.color = color
        self.set_selected(False)

    def set_color(self, color: QColor) -> None:
        self.color = color
        self.set_selected(self.zValue() > 0)

    def set_selected(self, selected: bool) -> None:
        pen = QPen(SELECTED_COLOR if selected else self.color, 3.0 if selected else 1.5)
        pen.setCosmetic(True)
        self.setPen(pen)
        fill = QColor(SELECTED_COLOR)
        fill.setAlpha(70)
        self.setBrush(QBrush(fill) if selected else Qt.BrushStyle.NoBrush)
        self.setZValue(1 if selected else 0)


class FieldsItem(QGraphicsObject):
    """Parent of one FieldShape per field (outlined in `color`, or as `colors` says by
    key), keyed by `keys` (default: the row); children are added a chunk per event-loop
    turn. Shapes can be replaced by key (edits) and several selected."""

    def __init__(self, paths: list[QPainterPath], bounds: QRectF,
                 color: QColor = FIELD_COLOR, keys: list[int] | None = None,
                 colors: dict[int, QColor] | None = None) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents)
        self._bounds = bounds
        self.color = color
        self._colors = colors or {}
        self._pending = list(zip(keys if keys is not None else range(len(paths)), paths))
        self._shapes: dict[int, FieldShape] = {}
        self._selected: set[int] = set()
        self._timer = QTimer(self)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._add_chunk)
        self._timer.start()

    def boundingRect(self) -> QRectF:
        return self._bounds

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        """Nothing: the children draw the outlines."""

    @property
    def count(self) -> int:
        return len(self._shapes) + len(self._pending)

    @property
    def shapes(self) -> list[FieldShape]:
        """The shapes added so far, in the order they came."""
        return list(self._shapes.values())

    def shape_of(self, key: int) -> FieldShape | None:
        return self._shapes.get(key)

    @property
    def complete(self) -> bool:
        return not self._pending

    def _add_chunk(self) -> None:
        chunk, self._pending = self._pending[:FIELD_CHUNK], self._pending[FIELD_CHUNK:]
        for key, path in chunk:
            self._add(key, path)
        if not self._pending:
            self._timer.stop()

    def _add(self, key: int, path: QPainterPath) -> None:
        shape = FieldShape(path, key, self, self._colors.get(key, self.color))
        shape.set_selected(key in self._selected)
        self._shapes[key] = shape

    def replace(self, removed: list[int], added: list[tuple[int, QPainterPath, QColor]],
                bounds: QRectF) -> None:
        """Take the shapes `removed` off and add (key, path, colour) shapes; `bounds` is
        the new extent. Pending shapes are added first."""
        while self._pending:
            self._add_chunk()
        for key in removed:
            shape = self._shapes.pop(key, None)
            if shape is not None and shape.scene() is not None:
                shape.scene().removeItem(shape)
        for key, path, color in added:
            self._colors[key] = color
            self._add(key, path)
        self.prepareGeometryChange()
        self._bounds = bounds

    def select(self, keys: set[int]) -> None:
        """Highlight the shapes `keys` (none: clear)."""
        for key in self._selected - keys:
            if key in self._shapes:
                self._shapes[key].set_selected(False)
        self._selected = set(keys)
        for key in keys:
            if key in self._shapes:
                self._shapes[key].set_selected(True)
