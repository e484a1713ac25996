"""The fine-tune dialog's "My corrections on the open image": the corrected fields of the
current field layer as training data (only inside its reviewed areas), the validation block
the trainer held out outlined on the map after a run, and "Re-segment the rest with the new
model" (the merge is the core's, farmseg.editing.resegment, pushed as one undoable edit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QHBoxLayout, QLabel, QPushButton, QWidget

from farmseg.editing.layer import EditableLayer
from farmseg.editing.resegment import merge_resegmented
from farmseg.errors import FarmsegError
from farmseg.geoio.vectors import reproject
from farmseg.gui.convert import polygon_path
from farmseg.gui.edit_session import EditSession
from farmseg.gui.field_editor import FieldEditor
from farmseg.gui.finetune_job import Labels
from farmseg.gui.layers import Layer
from farmseg.gui.segmenting import Segmenter
from farmseg.gui.widgets import named
from farmseg.gui.worker import JobOutcome

VALIDATION_COLOR = QColor(255, 215, 0)
NO_FIELDS = ("There are no fields to learn from: segment the open image (or open its fields) "
             "and correct them.")
NOT_REVIEWED = ("Nothing is marked as reviewed yet: mark the areas you checked (Edit > Mark "
                "view as reviewed, or draw them); only they are used for training.")
EXPLAIN = ("The fields of the open image inside its reviewed areas (the rest of the image is "
           "not used). A block of the reviewed area is held out for validation and outlined "
           "on the map after the run.")


class ValidationItem(QGraphicsPathItem):
    """The part of the reviewed areas a fine-tune validated on: a gold dash-dot outline
    (a child of the field layer's item)."""

    def __init__(self) -> None:
        super().__init__()
        pen = QPen(VALIDATION_COLOR, 2.5, Qt.PenStyle.DashDotLine)
        pen.setCosmetic(True)
        self.setPen(pen)
        fill = QColor(VALIDATION_COLOR)
        fill.setAlpha(35)
        self.setBrush(fill)
        self.setZValue(2)  # above the outlines
        self.setToolTip("Validation block of the last fine-tune: held out of training")


def validation_area(layer: EditableLayer, finetune: dict[str, Any] | None,
                    image_crs: str | None) -> shapely.Geometry:
    """The reviewed areas inside the validation blocks a fine-tune recorded (bounds in the
    image's CRS); empty when it recorded none."""
    blocks = ((finetune or {}).get("validation") or {}).get("blocks") or []
    if not blocks:
        return shapely.Polygon()
    boxes = shapely.box(*np.asarray(blocks, dtype=float).T)
    target = layer.crs.to_wkt() if layer.crs is not None else None
    return shapely.intersection(shapely.union_all(reproject(boxes, image_crs, target)),
                                layer.reviewed)


def _draw_validation(layer: Layer, area: shapely.Geometry, y_sign: float) -> None:
    """Show `area` over the field layer, in place of an earlier outline."""
    item = next((child for child in layer.item.childItems()
                 if isinstance(child, ValidationItem)), None)
    if item is None:
        item = ValidationItem()
        item.setParentItem(layer.item)
    item.setPath(polygon_path(area, y_sign))


class MyCorrections(QWidget):
    """The corrections of the field layer current when the dialog opened, and what follows a
    run on them: the validation outline and the re-segment button with what it did.
    `resegmented` follows every re-segmentation with a line that says what happened."""

    resegmented = Signal(str)

    def __init__(self, editor: FieldEditor, segmenter: Segmenter, y_sign: float,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._editor, self._segmenter, self._y_sign = editor, segmenter, y_sign
        self._layer = editor.layer()
        self._bundle = ""  # the model of the last run
        self._model = ""  # the bundle a re-segmentation runs; "" when none is running
        self._said = ""
        self.button = named(QPushButton("Re-segment the rest with the new model"),
                            "resegmentRestButton",
                            "Segment the image again with the new model: fields you drew, "
                            "edited or confirmed and the fields in the reviewed areas stay; "
                            "the other fields are replaced (one step to undo)")
        self.text = named(QLabel(wordWrap=True), "resegmentLabel")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.button)
        row.addWidget(self.text, 1)
        self.button.clicked.connect(self.resegment)
        segmenter.ended.connect(self._on_ended)
        self.resegmented.connect(self.text.setText)
        self.hide()

    def session(self) -> EditSession | None:
        """The corrected layer's editing state while that layer is open, else None."""
        session = self._layer.edits if self._layer is not None else None
        return session if session in self._editor.sessions() else None

    def problem(self) -> str | None:
        """Why the corrections cannot be trained on (None: they can)."""
        session = self.session()
        if session is None:
            return NO_FIELDS
        return NOT_REVIEWED if session.layer.reviewed.is_empty else None

    def labels(self) -> Labels:
        """The corrections as they are now (fields, reviewed areas) over their image."""
        session = self.session()
        assert session is not None, "labels() without corrections"
        return Labels("corrections", [session.image], corrections=session.layer)

    def offer(self, bundle: str, finetune: dict[str, Any] | None) -> str:
        """After a run on the corrections: outline its validation block and offer to
        re-segment with `bundle`; returns a line on the validation area for the dialog."""
        session = self.session()
        if session is None or self._layer is None:
            return ""
        with rasterio.open(session.image) as src:
            crs = src.crs.to_wkt() if src.crs else None
        area = validation_area(session.layer, finetune, crs)
        _draw_validation(self._layer, area, self._y_sign)
        self._model, self._bundle = "", bundle
        self.text.clear()
        self.show()
        self.button.setEnabled(True)
        return ("Validated on the gold outlined block of your reviewed area (on the map)."
                if not area.is_empty else "No validation block was recorded.")

    def resegment(self) -> None:
        """Run Segment with the new model on the image; the merge follows its result."""
        session = self.session()
        if session is None:
            self.resegmented.emit("The corrected fields are no longer open.")
            return
        if not self._segmenter.segment_with(session.image, self._bundle, self._merge):
            self.resegmented.emit("A segmentation is running: try again once it ended.")
            return
        self._model, self._said = self._bundle, "Re-segmentation stopped; nothing changed."
        self.button.setEnabled(False)
        self.text.setText("Segmenting the image with the new model…")

    def _merge(self, outcome: JobOutcome) -> None:
        session = self.session()
        if session is None:
            self._said = "The corrected fields were closed meanwhile; nothing changed."
            return
        try:
            edit = merge_resegmented(session.layer, outcome.result.layer)
        except FarmsegError as exc:
            self._said = f"Cannot merge the new fields: {exc}"
            return
        session.do(edit)
        session.probabilities = outcome.prob_path  # growing fields uses the new model
        new = np.setdiff1d(edit.added.ids, edit.removed.ids)
        replaced = np.setdiff1d(edit.removed.ids, edit.added.ids)
        self._said = (f"Re-segmented: {len(new)} new fields in place of {len(replaced)} "
                      f"predicted ones; {len(session.layer) - len(new)} kept (Edit > Undo "
                      f"takes it back). Model: {Path(self._model).name}.")

    def _on_ended(self) -> None:
        if self._model:
            self._model = ""
            self.button.setEnabled(True)
            self.resegmented.emit(self._said)
