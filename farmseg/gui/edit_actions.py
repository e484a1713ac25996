"""The editing commands of the main window: the map tools (one at a time), edits, undo and
redo with the history, the review queue and the field files, as actions with shortcuts
(children of the window, named for tests and scripts) and their menus."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import shapely
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QMenuBar

from farmseg.gui.field_editor import FieldEditor
from farmseg.gui.map_layers import MapLayers
from farmseg.gui.map_tools import MapTool, PathTool, PointTool, ReshapeTool, SelectTool
from farmseg.gui.map_view import MapView
from farmseg.gui.menus import add_menu, make_action
from farmseg.gui.review_panel import ReviewPanel

TOOLS = (  # name, text, shortcut, tip
    ("actionSelect", "&Select", "S", "Select fields: click; Shift/Ctrl-click or "
     "Shift/Ctrl-drag a box to add to the selection; drag to pan"),
    ("actionSplitField", "S&plit field", "K", "Split a field along a line: click each "
     "vertex, double-click or Enter to finish, Esc to abort"),
    ("actionDrawField", "&Draw field", "D", "Draw a new field: click each vertex (snapped "
     "to neighbouring fields), double-click or Enter to finish, Esc to abort"),
    ("actionGrowField", "&Grow field", "G", "Click where there is no field to grow one from "
     "the model's probabilities"),
    ("actionReshape", "&Reshape", "R", "Drag a vertex to move it, click an edge to add "
     "one, Shift-click (or right-click) a vertex to delete it"),
    ("actionDrawReviewed", "Draw re&viewed area", "Shift+V", "Outline an area where you "
     "checked every field: click each vertex, double-click or Enter to finish"),
)


class EditActions:
    """Builds the editing actions on `window` and wires them to `editor` and `review`;
    `commands` holds the File commands `open_fields`, `save`, `export_training` and
    `segment_folder` (the actions in `file`)."""

    def __init__(self, window: QMainWindow, view: MapView, layers: MapLayers,
                 editor: FieldEditor, review: ReviewPanel,
                 commands: dict[str, Callable[[], object]]) -> None:
        self._window, self._view, self._layers = window, view, layers
        self._editor, self._review = editor, review
        self.tools = QActionGroup(window)
        self._tool_of: dict[QAction, MapTool] = {}
        for (name, text, key, tip), tool in zip(TOOLS, self._make_tools()):
            action = make_action(window, name, text, partial(view.set_tool, tool), key, tip=tip)
            action.setCheckable(True)
            self.tools.addAction(action)
            self._tool_of[action] = tool
        self.tools.actions()[0].trigger()
        new = partial(make_action, window)
        self.delete = new("actionDeleteFields", "&Delete fields", editor.delete, "Del",
                          tip="Delete the selected fields")
        self.merge = new("actionMergeFields", "&Merge fields", editor.merge, "M",
                         tip="Merge the selected fields (they must touch) into one")
        self.next = new("actionReviewNext", "&Next field", partial(review.step, 1), "N",
                        tip="Zoom to the next field of the review queue")
        self.previous = new("actionReviewPrevious", "&Previous field",
                            partial(review.step, -1), "P",
                            tip="Zoom to the previous field of the review queue")
        self.accept = new("actionAcceptField", "&Accept field", review.accept, "A",
                          tip="Mark the field as checked (confirmed) and go to the next")
        self.mark_view = new("actionMarkReviewed", "Mark &view as reviewed", self._mark_view,
                             "V", tip="Record the area shown as checked: its fields become "
                             "training labels")
        self.file = [new("actionOpenFields", "Open fields for &editing…",
                         commands["open_fields"], tip="Edit fields saved before"),
                     new("actionSaveFields", "&Save fields", commands["save"], "Ctrl+S",
                         tip="Save the edited fields (GeoPackage with the reviewed areas)"),
                     new("actionExportTrainingData", "Export corrections as &training data…",
                         commands["export_training"],
                         tip="Write the reviewed areas' image, fields and outlines as a "
                             "training folder"),
                     new("actionSegmentFolder", "Segment a &folder…", commands["segment_folder"],
                         tip="Segment every image of a folder into one field layer")]
        self.undo = self._undo_action("actionUndo", True)
        self.redo = self._undo_action("actionRedo", False)
        editor.changed.connect(self.update)
        self.update()

    def _make_tools(self) -> list[MapTool]:
        view, editor = self._view, self._editor
        return [SelectTool(view, editor.pick, editor.box),
                PathTool(view, editor.split, closed=False),
                PathTool(view, editor.draw, closed=True, snap=editor.snap),
                PointTool(view, editor.grow),
                ReshapeTool(view, editor),
                PathTool(view, editor.mark_reviewed, closed=True, snap=editor.snap)]

    def _undo_action(self, name: str, undo: bool) -> QAction:
        group = self._editor.undo_group
        action = (group.createUndoAction if undo else group.createRedoAction)(self._window)
        action.setObjectName(name)
        key = "Ctrl+Z" if undo else "Ctrl+Shift+Z"
        action.setShortcut(QKeySequence(key))
        action.setToolTip(f"{'Undo' if undo else 'Redo'} the last edit ({key})")
        self._window.addAction(action)
        return action

    def update(self) -> None:
        session = self._editor.session()
        selected = len(session.selected) if session is not None else 0
        self.delete.setEnabled(selected >= 1)
        self.merge.setEnabled(selected >= 2)
        for action in (self.next, self.previous, self.accept, self.mark_view, *self.file[1:3],
                       *self.tools.actions()[1:]):
            action.setEnabled(session is not None)

    def _mark_view(self) -> None:
        """Mark what the view shows of the current image as reviewed."""
        rect = self._view.visible_rect()
        session = self._editor.session()
        image = next((layer for layer in self._layers.of_kind("image")
                      if session is not None and layer.source == session.image), None)
        if image is not None:
            rect = rect & image.item.sceneBoundingRect()
        sign = self._view.y_sign
        self._editor.mark_reviewed(shapely.box(rect.left(), sign * rect.top(), rect.right(),
                                               sign * rect.bottom()))

    def menus(self, bar: QMenuBar) -> QMenu:
        """The Edit menu: undo, redo, the history, the tools, the edits and the review."""
        history = QMenu("&History", self._window)
        history.aboutToShow.connect(partial(self._fill_history, history))
        return add_menu(bar, "&Edit", [self.undo, self.redo, history, None,
                                       *self.tools.actions(), None, self.delete, self.merge,
                                       None, self.next, self.previous, self.accept,
                                       self.mark_view])

    def _fill_history(self, menu: QMenu) -> None:
        """The current layer's edits, oldest first; choosing one goes back (or on) to it."""
        menu.clear()
        stack = self._editor.undo_group.activeStack()
        if stack is None or stack.count() == 0:
            menu.addAction("No edits").setEnabled(False)
            return
        for index in range(stack.count() + 1):
            text = stack.text(index - 1) if index else "Fields as opened"
            entry = menu.addAction(text, partial(stack.setIndex, index))
            entry.setCheckable(True)
            entry.setChecked(index == stack.index())
