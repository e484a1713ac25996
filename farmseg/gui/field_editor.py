"""Editing the current field layer: gestures from the map tools and commands from the menus
become calls of the core (farmseg.editing), pushed on the layer's undo stack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoGroup
from PySide6.QtWidgets import QStatusBar

from farmseg.editing import ops
from farmseg.editing.geometry import fields_near, nearest_vertex, snap_point
from farmseg.editing.grow import grow_field_from_raster
from farmseg.editing.history import Edit
from farmseg.editing.layer import EditableLayer
from farmseg.errors import FarmsegError
from farmseg.gui.edit_session import Change, EditSession
from farmseg.gui.field_drawing import draw_reviewed, sync_drawing
from farmseg.gui.layers import Layer
from farmseg.gui.map_layers import MapLayers
from farmseg.gui.map_tools import Point
from farmseg.gui.map_view import MapView
from farmseg.gui.tasks import run_in_background

MESSAGE_MS = 8000


@dataclass(frozen=True)
class Corrections:
    """The corrected fields of an image, their reviewed areas included (for training)."""

    layer: EditableLayer
    image: Path


class FieldEditor(QObject):
    """The edit commands on the current field layer (`layers.current_or_top("fields")`);
    `changed` follows any change of that layer, its selection or which layer it is."""

    changed = Signal()

    def __init__(self, view: MapView, layers: MapLayers, status: QStatusBar,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._view, self._layers, self._status = view, layers, status
        self.undo_group = QUndoGroup(self)
        self._attached: set[str] = set()
        layers.changed.connect(self._on_layers_changed)
        layers.currentChanged.connect(self._on_current_changed)

    # ----------------------------------------------------------------- layers

    def layer(self) -> Layer | None:
        """The field layer edits go to: the current one, else the top one."""
        return self._layers.current_or_top("fields")

    def session(self) -> EditSession | None:
        layer = self.layer()
        return layer.edits if layer is not None else None

    def sessions(self) -> list[EditSession]:
        """Every field layer's editing state, top to bottom."""
        return [layer.edits for layer in self._layers.of_kind("fields") if layer.edits]

    def _on_layers_changed(self) -> None:
        for layer in self._layers.of_kind("fields"):
            session = layer.edits
            if session is not None and session.key not in self._attached:
                self._attached.add(session.key)
                self.undo_group.addStack(session.stack)
                session.changed.connect(lambda change, on=layer: self._redraw(on, change))
                session.selectionChanged.connect(lambda on=layer: self._on_selection(on))
                draw_reviewed(layer, self._view.y_sign)
        for stack in self.undo_group.stacks():
            if all(s.stack is not stack for s in self.sessions()):
                self.undo_group.removeStack(stack)
        self._on_current_changed()

    def _on_current_changed(self) -> None:
        session = self.session()
        stack = session.stack if session is not None else None
        self.undo_group.setActiveStack(stack)  # type: ignore[arg-type]  # None: no stack
        self.changed.emit()

    def _redraw(self, layer: Layer, change: Change) -> None:
        sync_drawing(layer, change, self._view.y_sign)
        self._layers.refresh(layer)
        self.changed.emit()

    def _on_selection(self, layer: Layer) -> None:
        session = layer.edits
        assert session is not None
        layer.outlines.select(session.selected)
        self._layers.show_fields(session.layer, sorted(session.selected))
        self.changed.emit()

    # ----------------------------------------------------------------- selection

    def field_ids(self) -> list[int]:
        session = self.session()
        return [int(i) for i in session.layer.ids] if session is not None else []

    def select(self, ids: list[int]) -> None:
        session = self.session()
        if session is not None:
            session.select(ids)

    def pick(self, xy: Point, add: bool) -> None:
        """Select the field at `xy` (`add`: toggle it in the selection)."""
        session = self.session()
        if session is None:
            return
        hit = session.layer.field_at(*xy)
        if not add:
            session.select([hit] if hit is not None else [])
        elif hit is not None:
            session.select(session.selected ^ {hit})

    def box(self, a: Point, b: Point, add: bool) -> None:
        """Select the fields touching the rectangle `a`-`b` (`add`: to the selection)."""
        session = self.session()
        if session is None:
            return
        layer = session.layer
        hits = layer.ids[layer.tree.query(shapely.box(*a, *b), predicate="intersects")]
        session.select({int(i) for i in hits} | (session.selected if add else set()))

    # ----------------------------------------------------------------- edits

    def say(self, text: str) -> None:
        self._status.showMessage(text, MESSAGE_MS)

    def edit(self, make: Callable[[EditableLayer, set[int]], Edit]) -> bool:
        """Make an edit of the current layer and selection and push it; say why not."""
        session = self.session()
        if session is None:
            self.say("No fields to edit: segment the image, or open fields (File menu).")
            return False
        try:
            edit = make(session.layer, session.selected)
        except FarmsegError as exc:
            self.say(f"Cannot edit: {exc}")
            return False
        session.do(edit)
        self.say(edit.text)
        return True

    def delete(self) -> None:
        self.edit(lambda layer, selected: ops.delete(layer, selected))

    def merge(self) -> None:
        self.edit(lambda layer, selected: ops.merge(layer, selected))

    def split(self, line: list[Point]) -> None:
        """Split the selected field (else the one under the middle of the line)."""
        def make(layer: EditableLayer, selected: set[int]) -> Edit:
            middle = shapely.LineString(line).interpolate(0.5, normalized=True)
            target = next(iter(selected)) if len(selected) == 1 else \
                layer.field_at(middle.x, middle.y)
            if target is None:
                raise FarmsegError(None, "select the field to split, or draw across it")
            return ops.split(layer, target, line)
        self.edit(make)

    def snap(self, xy: Point, tolerance: float) -> Point:
        """`xy` snapped to the vertices and edges of fields within `tolerance`."""
        session = self.session()
        return snap_point(session.layer, xy, tolerance) if session is not None else xy

    def draw(self, ring: list[Point]) -> None:
        self.edit(lambda layer, _: ops.draw(layer, ring))

    def accept(self, ids: list[int]) -> bool:
        return self.edit(lambda layer, _: ops.confirm(layer, ids))

    def mark_reviewed(self, area: list[Point] | shapely.Geometry) -> None:
        self.edit(lambda layer, _: ops.mark_reviewed(layer, area))

    def grow(self, xy: Point) -> None:
        """A field from the model's probabilities around `xy`, grown off the GUI thread."""
        session = self.session()
        if session is None or session.probabilities is None:
            self.say("Growing a field needs the model's probabilities: segment the image.")
            return
        layer, probabilities = session.layer, session.probabilities
        self.say("Growing a field…")

        def done(edit: Edit) -> None:
            if session.layer is not layer:
                self.say("The fields changed meanwhile: click again to grow a field.")
                return
            session.do(edit)
            self.say(edit.text)

        run_in_background(lambda: grow_field_from_raster(layer, probabilities, xy), done,
                          lambda error: self.say(f"Cannot grow a field: {error[0]}"))

    # ----------------------------------------------------------------- reshaping

    def _vertex_field(self, xy: Point, pick: float) -> int | None:
        """The field with the vertex nearest to `xy` within `pick`."""
        session = self.session()
        if session is None:
            return None
        layer = session.layer
        best: tuple[float, int | None] = (pick, None)
        for i in fields_near(layer, shapely.Point(xy), pick):
            try:
                vertex = nearest_vertex(layer.geoms[i], xy, pick)
            except FarmsegError:
                continue
            distance = shapely.Point(vertex).distance(shapely.Point(xy))
            best = min(best, (distance, int(layer.ids[i])), key=lambda b: b[0])
        return best[1]

    def has_vertex(self, xy: Point, pick: float) -> bool:
        return self._vertex_field(xy, pick) is not None

    def move_vertex(self, xy: Point, to: Point, pick: float) -> None:
        field = self._vertex_field(xy, pick)
        if field is not None:
            self.edit(lambda layer, _: ops.move_vertex(layer, field, xy, to, pick, pick))

    def delete_vertex(self, xy: Point, pick: float) -> None:
        field = self._vertex_field(xy, pick)
        if field is None:
            self.say("Shift-click a vertex to delete it.")
            return
        self.edit(lambda layer, _: ops.delete_vertex(layer, field, xy, pick))

    def insert_vertex(self, xy: Point, pick: float) -> None:
        """Add a vertex on the nearest field edge within `pick`."""
        session = self.session()
        at = fields_near(session.layer, shapely.Point(xy), pick) if session else np.array([])
        if session is None or not len(at):
            self.say("Click on a field edge to add a vertex, drag a vertex to move it.")
            return
        edges = shapely.boundary(session.layer.geoms[at])
        field = int(session.layer.ids[at[shapely.distance(edges, shapely.Point(xy)).argmin()]])
        self.edit(lambda layer, _: ops.insert_vertex(layer, field, xy, pick))

    # ----------------------------------------------------------------- training hook

    def corrections(self) -> Corrections | None:
        """The current field layer with its reviewed areas and its image (None: none)."""
        session = self.session()
        return Corrections(session.layer, session.image) if session is not None else None
