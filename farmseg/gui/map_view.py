"""The map: a QGraphicsView that pans with the mouse and zooms to the cursor."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView, QWidget

from farmseg.gui.map_tools import MapTool

MAX_SCREEN_PX_PER_PIXEL = 64.0  # deepest zoom: one raster pixel drawn 64 screen pixels wide
MIN_FILL = 0.05  # widest zoom: the layers fill 5 % of the view
DRAG_START_PX = 4
SETTLE_MS = 150
TOOL_KEYS = (Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Backspace)


class MapView(QGraphicsView):
    """Scene units are map units; `y_sign` flips north up (scene y = y_sign * map y).

    Dragging pans and the wheel zooms, unless the current tool (`set_tool`) takes the
    press; clicks, double-clicks, hovering and Esc/Enter/Backspace go to the tool."""

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
        self._tool: MapTool | None = None
        self._tool_drag = False
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

    def set_tool(self, tool: MapTool | None) -> None:
        """Hand gestures to `tool` (None: only pan and zoom); the previous one is cancelled."""
        if self._tool is not None:
            self._tool.cancel()
        self._tool, self._tool_drag = tool, False
        self.viewport().setCursor(self._cursor())

    def tool(self) -> MapTool | None:
        return self._tool

    def _cursor(self) -> Qt.CursorShape:
        return self._tool.cursor if self._tool is not None else Qt.CursorShape.CrossCursor

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
        scene = self.mapToScene(event.position().toPoint())
        if event.button() == Qt.MouseButton.LeftButton:
            if self._tool is not None and self._tool.press(scene, event.modifiers()):
                self._tool_drag = True
                return
            self._press, self._dragged = event.position().toPoint(), False
        elif event.button() == Qt.MouseButton.RightButton and self._tool is not None:
            self._tool.right_click(scene)
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position().toPoint()
        scene = self.mapToScene(pos)
        self.cursorMoved.emit(scene)
        if self._tool_drag and self._tool is not None:
            self._tool.drag(scene)
        elif self._press is not None:
            delta = pos - self._press
            if self._dragged or delta.manhattanLength() >= DRAG_START_PX:
                self._dragged = True
                self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
                self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
                self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
                self._press = pos
        elif self._tool is not None:
            self._tool.hover(scene)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        scene = self.mapToScene(event.position().toPoint())
        if event.button() == Qt.MouseButton.LeftButton and self._tool_drag:
            self._tool_drag = False
            if self._tool is not None:
                self._tool.release(scene)
            return
        if event.button() == Qt.MouseButton.LeftButton and self._press is not None:
            if not self._dragged:
                self.clicked.emit(scene)
                if self._tool is not None:
                    self._tool.click(scene, event.modifiers())
            self._press = None
            self.viewport().setCursor(self._cursor())
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self._tool is not None and event.button() == Qt.MouseButton.LeftButton:
            self._tool.double_click(self.mapToScene(event.position().toPoint()))
            return
        super().mouseDoubleClickEvent(event)

    def event(self, event: QEvent) -> bool:
        """Esc, Enter and Backspace reach a tool in the middle of a gesture before any
        shortcut (Esc also cancels a run)."""
        if (event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent)
                and event.key() in TOOL_KEYS and self._tool is not None and self._tool.busy()):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if self._tool is not None and self._tool.key(event.key()):
            return
        super().keyPressEvent(event)

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        super().scrollContentsBy(dx, dy)
        self._settle.start()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._settle.start()
