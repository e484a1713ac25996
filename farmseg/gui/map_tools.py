"""Map tools: mouse gestures on the map view turned into points in map units.

A tool never edits anything: it hands clicks, boxes, lines and drags to callbacks (the
field editor makes the core calls). Scene points are map points with y times `y_sign`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtWidgets import QGraphicsScene

from farmseg.gui.overlays import Preview, RubberBand

Point = tuple[float, float]
ADD_MODIFIERS = Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier
SNAP_PX = 8.0  # snapping and picking distance, screen pixels


class Canvas(Protocol):
    """What tools need of the map view."""

    y_sign: float

    def scene(self) -> QGraphicsScene: ...

    def scale_factor(self) -> float: ...


class MapTool:
    """Default: clicks and drags do nothing (the view pans). `press` returning True
    takes the drag that follows (drag, release) from the view."""

    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas

    def to_map(self, scene: QPointF) -> Point:
        return scene.x(), self.canvas.y_sign * scene.y()

    def to_scene(self, xy: Point) -> QPointF:
        return QPointF(xy[0], self.canvas.y_sign * xy[1])

    def pixels(self, screen_px: float) -> float:
        """`screen_px` screen pixels in map units at the current zoom."""
        return screen_px / max(self.canvas.scale_factor(), 1e-12)

    def press(self, at: QPointF, modifiers: Qt.KeyboardModifier) -> bool:
        return False

    def drag(self, at: QPointF) -> None:
        """The mouse moved during a drag this tool took."""

    def release(self, at: QPointF) -> None:
        """The end of a drag this tool took."""

    def click(self, at: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        """A click that was not a drag."""

    def double_click(self, at: QPointF) -> None:
        """A double click."""

    def right_click(self, at: QPointF) -> None:
        """A click of the right button."""

    def hover(self, at: QPointF) -> None:
        """The mouse moved with no button down."""

    def key(self, key: int) -> bool:
        """A key pressed on the map; True if the tool used it."""
        return False

    def busy(self) -> bool:
        """Whether a gesture is under way (Esc and Enter then belong to the tool)."""
        return False

    def cancel(self) -> None:
        """Drop a gesture under way and its preview."""


class SelectTool(MapTool):
    """Click: select the field there (Shift/Ctrl: add it); Shift/Ctrl-drag: select the
    fields inside a rubber band, added to the selection."""

    cursor = Qt.CursorShape.ArrowCursor

    def __init__(self, canvas: Canvas, pick: Callable[[Point, bool], None],
                 box: Callable[[Point, Point, bool], None]) -> None:
        super().__init__(canvas)
        self._pick, self._box = pick, box
        self._start: QPointF | None = None
        self._band: RubberBand | None = None

    def press(self, at: QPointF, modifiers: Qt.KeyboardModifier) -> bool:
        if not modifiers & ADD_MODIFIERS:
            return False
        self._start = at
        return True

    def drag(self, at: QPointF) -> None:
        if self._start is None:
            return
        if self._band is None:
            self._band = RubberBand()
            self.canvas.scene().addItem(self._band)
        self._band.setRect(QRectF(self._start, at).normalized())

    def release(self, at: QPointF) -> None:
        start, dragged = self._start, self._band is not None
        self.cancel()
        if start is not None and dragged:
            self._box(self.to_map(start), self.to_map(at), True)
        elif start is not None:
            self._pick(self.to_map(at), True)

    def click(self, at: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        self._pick(self.to_map(at), bool(modifiers & ADD_MODIFIERS))

    def cancel(self) -> None:
        if self._band is not None:
            self.canvas.scene().removeItem(self._band)
        self._start, self._band = None, None


class PathTool(MapTool):
    """One click per vertex (snapped by `snap`), double-click or Enter to finish, Esc to
    abort, Backspace to drop the last vertex; `done(points)` gets the line (`closed`:
    a polygon outline, at least 3 vertices, else at least 2)."""

    def __init__(self, canvas: Canvas, done: Callable[[list[Point]], None], closed: bool,
                 snap: Callable[[Point, float], Point] | None = None) -> None:
        super().__init__(canvas)
        self._done, self._closed, self._snap = done, closed, snap
        self.points: list[Point] = []
        self._preview: Preview | None = None

    def _snapped(self, at: QPointF) -> Point:
        xy = self.to_map(at)
        return self._snap(xy, self.pixels(SNAP_PX)) if self._snap else xy

    def click(self, at: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        xy = self._snapped(at)
        if not self.points or self.points[-1] != xy:
            self.points.append(xy)
        self._show(None)

    def hover(self, at: QPointF) -> None:
        if self.points:
            self._show(self._snapped(at))

    def double_click(self, at: QPointF) -> None:
        self.finish()

    def key(self, key: int) -> bool:
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.finish()
        elif key == Qt.Key.Key_Escape:
            self.cancel()
        elif key == Qt.Key.Key_Backspace and self.points:
            self.points.pop()
            self._show(None)
        else:
            return False
        return True

    def busy(self) -> bool:
        return bool(self.points)

    def finish(self) -> None:
        points = self.points
        self.cancel()
        if len(points) >= (3 if self._closed else 2):
            self._done(points)

    def cancel(self) -> None:
        if self._preview is not None:
            self.canvas.scene().removeItem(self._preview)
        self.points, self._preview = [], None

    def _show(self, cursor: Point | None) -> None:
        if self._preview is None:
            self._preview = Preview()
            self.canvas.scene().addItem(self._preview)
        points = self.points + ([cursor] if cursor is not None else [])
        self._preview.show_points([self.to_scene(xy) for xy in points], self._closed,
                                  self.canvas.scale_factor())



class PointTool(MapTool):
    """A click hands its point to `done` (growing a field)."""

    cursor = Qt.CursorShape.PointingHandCursor

    def __init__(self, canvas: Canvas, done: Callable[[Point], None]) -> None:
        super().__init__(canvas)
        self._done = done

    def click(self, at: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        self._done(self.to_map(at))


class Reshaper(Protocol):
    """What the reshape tool calls (map units; `pick` the distance that counts as on it)."""

    def has_vertex(self, xy: Point, pick: float) -> bool: ...

    def move_vertex(self, xy: Point, to: Point, pick: float) -> None: ...

    def insert_vertex(self, xy: Point, pick: float) -> None: ...

    def delete_vertex(self, xy: Point, pick: float) -> None: ...


class ReshapeTool(MapTool):
    """Drag a vertex of a field to move it; click on an edge to add a vertex there;
    Shift-click (or right-click) a vertex to delete it."""

    cursor = Qt.CursorShape.SizeAllCursor

    def __init__(self, canvas: Canvas, target: Reshaper) -> None:
        super().__init__(canvas)
        self._target = target
        self._from: Point | None = None
        self._preview: Preview | None = None

    def press(self, at: QPointF, modifiers: Qt.KeyboardModifier) -> bool:
        xy = self.to_map(at)
        if modifiers & Qt.KeyboardModifier.ShiftModifier or \
                not self._target.has_vertex(xy, self.pixels(SNAP_PX)):
            return False
        self._from = xy
        return True

    def drag(self, at: QPointF) -> None:
        if self._from is None:
            return
        if self._preview is None:
            self._preview = Preview()
            self.canvas.scene().addItem(self._preview)
        self._preview.show_points([self.to_scene(self._from), at], False,
                                  self.canvas.scale_factor())

    def release(self, at: QPointF) -> None:
        start = self._from
        self.cancel()
        if start is not None and self.to_map(at) != start:
            self._target.move_vertex(start, self.to_map(at), self.pixels(SNAP_PX))

    def click(self, at: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        xy, pick = self.to_map(at), self.pixels(SNAP_PX)
        if modifiers & Qt.KeyboardModifier.ShiftModifier:
            self._target.delete_vertex(xy, pick)
        else:
            self._target.insert_vertex(xy, pick)

    def right_click(self, at: QPointF) -> None:
        self._target.delete_vertex(self.to_map(at), self.pixels(SNAP_PX))

    def cancel(self) -> None:
        if self._preview is not None:
            self.canvas.scene().removeItem(self._preview)
        self._from, self._preview = None, None
