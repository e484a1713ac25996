"""The map: a QGraphicsView that pans with the mouse and zooms to the cursor."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QMouseEvent, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView, QWidget

MAX_SCREEN_PX_PER_PIXEL = 64.0  # deepest zoom: one raster pixel drawn 64 screen pixels wide
MIN_FILL = 0.05  # widest zoom: the layers fill 5 % of the view
DRAG_START_PX = 4
SETTLE_MS = 150


class MapView(QGraphicsView):
    """Scene units are map units; `y_sign` flips north up (scene y = y_sign * map y)."""

    cursorMoved = Signal(QPointF)  # scene point under the mouse
    clicked = Signal(QPointF)  # scene point of a click that was not a drag
    viewChanged = Signal()  # after zooming, panning or resizing settles

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.y_sign = -1.0
        self._pixel = 1.0  # scene units per raster pixel of the finest layer
        self._extent = QRectF()
        self._press: QPoint | None = None
        self._dragged = False
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self.viewChanged)
        self.setMouseTracking(True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setBackgroundBrush(QColor(48, 52, 56))
        self.setAcceptDrops(False)  # files dropped on the map go to the main window
        self.viewport().setCursor(Qt.CursorShape.CrossCursor)

    def set_extent(self, extent: QRectF, pixel: float) -> None:
        """The layers' scene extent and finest pixel size: they bound panning and zooming."""
        self._extent, self._pixel = extent, pixel
        margin = max(extent.width(), extent.height())
        self.setSceneRect(extent.adjusted(-margin, -margin, margin, margin))

    def scale_factor(self) -> float:
        """Screen pixels per scene unit."""
        return self.transform().m11()

    def screen_px_per_pixel(self) -> float:
        """Screen pixels per raster pixel of the finest layer (1.0 = 100 %)."""
        return self.scale_factor() * self._pixel

    def visible_rect(self) -> QRectF:
        return self.mapToScene(self.viewport().rect()).boundingRect()

    def zoom_to(self, rect: QRectF) -> None:
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self._settle.start()

    def zoom_by(self, factor: float, at: QPoint | None = None) -> None:
        """Zoom by `factor`, keeping the scene point under viewport point `at` in place."""
        at = at if at is not None else self.viewport().rect().center()
        lowest = MIN_FILL * min(self.viewport().width() / max(self._extent.width(), 1e-12),
                                self.viewport().height() / max(self._extent.height(), 1e-12))
        highest = MAX_SCREEN_PX_PER_PIXEL / self._pixel
        target = min(max(self.scale_factor() * factor, lowest), highest)
        factor = target / self.scale_factor()
        if abs(factor - 1.0) < 1e-9:
            return
        before = self.mapToScene(at)
        self.scale(factor, factor)
        shift = self.mapToScene(at) - before
        self.centerOn(self.mapToScene(self.viewport().rect().center()) - shift)
        self._settle.start()

    def wheelEvent(self, event: QWheelEvent) -> None:
        self.zoom_by(1.25 ** (event.angleDelta().y() / 120.0), event.position().toPoint())

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._press, self._dragged = event.position().toPoint(), False
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position().toPoint()
        self.cursorMoved.emit(self.mapToScene(pos))
        if self._press is not None:
            delta = pos - self._press
            if self._dragged or delta.manhattanLength() >= DRAG_START_PX:
                self._dragged = True
                self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
                self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
                self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
                self._press = pos
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._press is not None:
            if not self._dragged:
                self.clicked.emit(self.mapToScene(event.position().toPoint()))
            self._press = None
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)
        super().mouseReleaseEvent(event)

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        super().scrollContentsBy(dx, dy)
        self._settle.start()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._settle.start()
