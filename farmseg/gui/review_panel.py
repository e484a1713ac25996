"""The review dock: the current layer's fields in review order (farmseg.editing.review),
Next / Previous zoom to each with some context, Accept confirms it."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from farmseg.editing.layer import EditableLayer
from farmseg.editing.review import review_queue
from farmseg.gui.convert import scene_bounds
from farmseg.gui.field_editor import FieldEditor
from farmseg.gui.map_view import MapView
from farmseg.gui.widgets import named

CONTEXT = 1.0  # the view shows this many field widths around the field


class ReviewPanel(QWidget):
    """Fields to check, most doubtful first; confirmed ones are ticked (or hidden when
    only what is left is shown). The order is kept while editing: fields an edit makes
    come after the current one; Re-order sorts what is left again."""

    def __init__(self, editor: FieldEditor, view: MapView, parent: QWidget | None = None
                 ) -> None:
        super().__init__(parent)
        self._editor, self._view = editor, view
        self._session_key = ""
        self._order: list[int] = []
        self._reasons: dict[int, str] = {}
        self.progress = named(QLabel(), "reviewProgress")
        self.left_only = named(QCheckBox("Only what is left"), "reviewLeftOnly",
                               "Hide the fields already confirmed")
        self.left_only.toggled.connect(lambda _on: self._show_rows())
        self.list = named(QListWidget(), "reviewList")
        self.list.itemActivated.connect(lambda item: self.go_to(self.list.row(item)))
        self.list.itemClicked.connect(lambda item: self.go_to(self.list.row(item)))
        reorder = named(QPushButton("Re-order"), "reviewReorder",
                        "Sort the fields left to review again")
        reorder.clicked.connect(self._rebuild)
        row = QHBoxLayout()
        row.addWidget(self.left_only, 1)
        row.addWidget(reorder)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.progress)
        layout.addLayout(row)
        layout.addWidget(self.list, 1)
        editor.changed.connect(self.update_queue)
        self.update_queue()

    def current_field(self) -> int | None:
        item = self.list.currentItem()
        return int(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def update_queue(self) -> None:
        """Follow the current layer: a new layer gets a new order, an edited one keeps it."""
        session = self._editor.session()
        if session is None:
            self._session_key, self._order = "", []
        elif session.key != self._session_key:
            self._session_key = session.key
            self._rebuild()
            return
        else:
            self._follow(session.layer)
        self._fill()

    def _rebuild(self) -> None:
        session = self._editor.session()
        if session is None:
            return
        layer = session.layer
        queue = review_queue(layer)
        self._reasons = {item.field_id: item.reason for item in queue}
        confirmed = layer.ids[layer.columns["status"] == "confirmed"]
        self._order = [item.field_id for item in queue] + [int(i) for i in confirmed]
        self._fill()

    def _follow(self, layer: EditableLayer) -> None:
        """Drop fields that are gone; put new ones after the current field."""
        present = set(layer.ids.tolist())
        current = self.current_field()
        at = self._order.index(current) + 1 if current in self._order else 0
        known = set(self._order)
        fresh = [i for i in layer.ids.tolist() if i not in known]
        self._reasons.update({i: "new" for i in fresh if i not in self._reasons})
        order = self._order[:at] + fresh + self._order[at:]
        self._order = [i for i in order if i in present]

    def _fill(self) -> None:
        session = self._editor.session()
        current = self.current_field()
        self.list.blockSignals(True)
        self.list.clear()
        status = {}
        if session is not None:
            layer = session.layer
            status = dict(zip(layer.ids.tolist(), layer.columns["status"].tolist()))
        for fid in self._order:
            done = status[fid] == "confirmed"
            item = QListWidgetItem(f"{'✓' if done else '•'} field {fid} · "
                                   f"{'confirmed' if done else self._reasons.get(fid, '')}")
            item.setData(Qt.ItemDataRole.UserRole, fid)
            self.list.addItem(item)
            if fid == current:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        confirmed = sum(1 for value in status.values() if value == "confirmed")
        self.progress.setText(f"{confirmed} of {len(status)} reviewed" if status else
                              "No field layer")
        self._show_rows()

    def _show_rows(self) -> None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            item.setHidden(self.left_only.isChecked() and item.text().startswith("✓"))

    def step(self, by: int) -> None:
        """Go to the next (`by` 1) or previous (-1) field shown in the list."""
        start = self.list.currentRow()
        row = start + by if start >= 0 else (0 if by > 0 else self.list.count() - 1)
        while 0 <= row < self.list.count() and self.list.item(row).isHidden():
            row += by
        if 0 <= row < self.list.count():
            self.go_to(row)
        else:
            self._editor.say("The end of the review queue." if by > 0 else
                             "The start of the review queue.")

    def go_to(self, row: int) -> None:
        """Select the field of list row `row` and zoom to it with its surroundings."""
        session = self._editor.session()
        if session is None:
            return
        self.list.setCurrentRow(row)
        fid = self.current_field()
        assert fid is not None
        session.select([fid])
        rect = scene_bounds(np.asarray([session.layer.geometry(fid)]), self._view.y_sign)
        margin = CONTEXT * max(rect.width(), rect.height()) / 2
        self._view.zoom_to(rect.adjusted(-margin, -margin, margin, margin))

    def accept(self) -> None:
        """Confirm the current field (else the selected ones) and go to the next."""
        fid = self.current_field()
        session = self._editor.session()
        ids = [fid] if fid is not None else sorted(session.selected) if session else []
        if self._editor.accept(ids) and fid is not None:
            self.step(1)
