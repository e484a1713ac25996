"""One field layer being edited: its current EditableLayer, a QUndoStack of the core's
edits, what is saved where, and which fields are selected."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from farmseg.editing.history import Edit
from farmseg.editing.layer import EditableLayer, to_field_layer
from farmseg.editing.store import save_layer
from farmseg.fields.clean import FieldLayer


@dataclass(frozen=True)
class Change:
    """What changed in the layer: fields taken off and fields (re)drawn, by id; `all`
    when the whole layer was replaced."""

    removed: tuple[int, ...] = ()
    added: tuple[int, ...] = ()
    everything: bool = False


class EditCommand(QUndoCommand):
    """A core `Edit` on the undo stack: redo applies it to the session, undo reverts it."""

    def __init__(self, session: EditSession, edit: Edit) -> None:
        super().__init__(edit.text)
        self._session, self.edit = session, edit

    def redo(self) -> None:
        self._session.swap(self.edit.apply(self._session.layer), self.edit.removed.ids,
                           self.edit.added.ids)

    def undo(self) -> None:
        self._session.swap(self.edit.revert(self._session.layer), self.edit.added.ids,
                           self.edit.removed.ids)


class EditSession(QObject):
    """The editing state of one field layer. `path` is where Save writes (None: ask);
    `image` the raster it belongs to; `probabilities` the model's output for growing
    fields (None: none). `changed` follows every change of the layer, `selectionChanged`
    every change of the selection."""

    changed = Signal(object)  # Change
    selectionChanged = Signal()

    def __init__(self, layer: EditableLayer, image: Path, path: Path | None = None,
                 probabilities: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.layer = self._saved = layer
        self.image, self.path, self.probabilities = image, path, probabilities
        self.key = uuid.uuid4().hex  # names its recovery file
        self.stack = QUndoStack(self)
        self.selected: set[int] = set()
        self._unsaved_base = False  # restored edits are unsaved before any command
        self.revision = 0  # counts the changes of the layer

    # ----------------------------------------------------------------- edits

    def do(self, edit: Edit) -> None:
        """Push a core edit made on the current layer (see swap)."""
        self.stack.push(EditCommand(self, edit))

    def swap(self, layer: EditableLayer, removed: np.ndarray, added: np.ndarray) -> None:
        """Make `layer` current (from a command); `removed`, `added`: ids to redraw. Fields
        that appear become the selection, else it keeps those that remain."""
        self.layer = layer
        self.revision += 1
        self.changed.emit(Change(tuple(removed.tolist()), tuple(added.tolist())))
        self.select((set(added.tolist()) - set(removed.tolist())) or self.selected)

    def reset(self, layer: EditableLayer, unsaved: bool) -> None:
        """Start over from `layer` with no history (`unsaved`: it differs from `path`)."""
        self.stack.clear()
        self.layer = layer
        self.revision += 1
        self._unsaved_base = unsaved
        if not unsaved:
            self._saved = layer
        self.changed.emit(Change(everything=True))
        self.select(self.selected)

    def discard(self) -> None:
        """Back to the layer as last saved (or as the model made it)."""
        self.reset(self._saved, False)

    @property
    def dirty(self) -> bool:
        """Whether the layer has edits that are not saved."""
        return self._unsaved_base or not self.stack.isClean()

    def save(self, path: Path) -> Path:
        """Write the layer atomically to `path` (GeoPackage: with the reviewed areas)."""
        written = save_layer(self.layer, path)
        self.path, self._saved, self._unsaved_base = written, self.layer, False
        self.stack.setClean()
        return written

    def field_layer(self) -> FieldLayer:
        """The current fields as the pipeline's layer (export, evaluation)."""
        return to_field_layer(self.layer)

    # ----------------------------------------------------------------- selection

    def select(self, ids: Iterable[int]) -> None:
        """Select the fields `ids` that exist (the rest are ignored)."""
        wanted = {int(i) for i in ids}
        self.selected = wanted & set(self.layer.ids.tolist()) if wanted else set()
        self.selectionChanged.emit()
