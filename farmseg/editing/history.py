"""Edits as changes that can be applied and reverted, and a plain undo/redo history."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from farmseg.editing.layer import EditableLayer, EditError


@dataclass(frozen=True, eq=False)
class Edit:
    """One edit: the fields it removes (as they were) and adds (as they become), by id,
    and the reviewed areas before and after where it changes them. A field changed in
    place is removed and added with the same id."""

    text: str
    removed: EditableLayer
    added: EditableLayer
    reviewed: tuple[shapely.Geometry, shapely.Geometry] | None = None

    @property
    def touched_ids(self) -> np.ndarray:
        """Ids of the fields this edit removes, adds or changes (to redraw)."""
        return np.union1d(self.removed.ids, self.added.ids)

    def apply(self, layer: EditableLayer) -> EditableLayer:
        """The layer after the edit (redo)."""
        return self._swap(layer, self.removed, self.added, 1)

    def revert(self, layer: EditableLayer) -> EditableLayer:
        """The layer before the edit (undo)."""
        return self._swap(layer, self.added, self.removed, 0)

    def _swap(self, layer: EditableLayer, old: EditableLayer, new: EditableLayer,
              side: int) -> EditableLayer:
        return layer.replace_rows(old.ids, new,
                                  self.reviewed[side] if self.reviewed is not None else None)


class EditHistory:
    """The current layer with undo and redo stacks of edits."""

    def __init__(self, layer: EditableLayer) -> None:
        self.layer = layer
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []

    def do(self, edit: Edit) -> EditableLayer:
        """Apply `edit` (made on the current layer); the redo stack is dropped."""
        self.layer = edit.apply(self.layer)
        self._undo.append(edit)
        self._redo.clear()
        return self.layer

    def undo(self) -> EditableLayer:
        if not self._undo:
            raise EditError("nothing to undo")
        edit = self._undo.pop()
        self.layer = edit.revert(self.layer)
        self._redo.append(edit)
        return self.layer

    def redo(self) -> EditableLayer:
        if not self._redo:
            raise EditError("nothing to redo")
        edit = self._redo.pop()
        self.layer = edit.apply(self.layer)
        self._undo.append(edit)
        return self.layer

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)
