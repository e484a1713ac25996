"""Tools > Evaluate against reference: score a field layer against reference polygons with
the core's evaluate_files, show the figures and the match map, save a report."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from farmseg.fields.export import write_fields
from farmseg.gui.convert import to_qimage
from farmseg.gui.dialogs import REPORT_FILTER, save_target, show_error
from farmseg.gui.layers import Layer
from farmseg.gui.tasks import run_in_background
from farmseg.gui.widgets import named
from farmseg.scoring.evaluate import MATCH_IOU, Evaluation, evaluate_files
from farmseg.scoring.report import GREEN, ORANGE, RED, match_map, write_report

FIGURES = (  # Score attribute, label, format, tooltip
    ("f1", "Field F1", "{:.3f}",
     f"Fields found one-to-one: a predicted field matches a reference field at IoU ≥ "
     f"{MATCH_IOU}"),
    ("precision", "Precision", "{:.3f}", "Share of the predicted fields that match"),
    ("recall", "Recall", "{:.3f}", "Share of the reference fields that are matched"),
    ("pixel_iou", "Field pixel IoU", "{:.3f}", "Overlap of all field pixels, ignoring borders"),
    ("boundary_f1", "Boundary F1 (2 px)", "{:.3f}", "Field borders found within 2 pixels"),
    ("predicted", "Predicted fields", "{}", ""),
    ("reference", "Reference fields", "{}", ""),
    ("matches", "Matched fields", "{}", ""),
    ("over_segmented", "Over-segmented", "{}",
     "Reference fields split into several predicted fields"),
    ("under_segmented", "Under-segmented", "{}",
     "Predicted fields that cover several reference fields"),
)
LEGEND = ((GREEN, "matched"), (RED, "missed"), (ORANGE, "false field"))
PREVIEW_SIDE = 240


@dataclass
class Scored:
    """An evaluation of `pred` against `ref`, and its match map (see report.match_map)
    with the background transparent."""

    evaluation: Evaluation
    matches: QImage
    pred: Layer
    ref: Layer

    @property
    def title(self) -> str:
        return f"{self.pred.name} vs {self.ref.name}"


def candidates(layers: list[Layer]) -> tuple[list[Layer], list[Layer]]:
    """Layers to score (segmentation results, then vector layers) and references (vector
    layers); newest first."""
    references = [layer for layer in layers if layer.kind == "vector"]
    return [layer for layer in layers if layer.kind == "fields"] + references, references


def can_evaluate(layers: list[Layer]) -> bool:
    """Whether a field layer and another vector layer (the reference) are open."""
    predicted, references = candidates(layers)
    return any(pred is not ref for pred in predicted for ref in references)


def transparent_background(rgb: np.ndarray) -> np.ndarray:
    """RGBA: white pixels (no field in either layer) fully transparent."""
    alpha = np.where((rgb == 255).all(axis=2), 0, 255).astype(np.uint8)
    return np.dstack([rgb, alpha])


def _evaluate(pred: Layer, ref: Layer, grid: Path, work_dir: Path) -> Evaluation:
    if pred.fields is None:
        return evaluate_files(pred.source, ref.source, grid)
    folder = Path(tempfile.mkdtemp(prefix="evaluate-", dir=work_dir))
    try:
        return evaluate_files(write_fields(pred.fields, folder / "fields.gpkg"), ref.source,
                              grid)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def score_layers(pred: Layer, ref: Layer, grid: Path, work_dir: Path) -> Scored:
    """Score `pred` against `ref` on the pixel grid of raster `grid` (any thread). A
    segmentation result is written to a temporary file in `work_dir` first."""
    evaluation = _evaluate(pred, ref, grid, work_dir)
    return Scored(evaluation, to_qimage(transparent_background(match_map(evaluation))), pred,
                  ref)


def _legend() -> QLabel:
    items = "&nbsp;&nbsp;".join(f"<span style='color: rgb{color}'>■</span>&nbsp;{text}"
                                for color, text in LEGEND)
    return named(QLabel(items), "matchLegend")


class EvaluateDialog(QDialog):
    """Pick the layer to score and the reference; the figures follow each choice."""

    evaluated = Signal(object)  # Scored
    reportSaved = Signal(object)  # Path

    def __init__(self, parent: QWidget, layers: list[Layer], image: Layer | None,
                 work_dir: Path, folder: Path) -> None:
        """`image` gives the pixel grid for vector layers; temporary files go to `work_dir`;
        reports are suggested in `folder`."""
        super().__init__(parent)
        self.setObjectName("evaluateDialog")
        self.setWindowTitle("Evaluate against reference")
        self._image, self._work_dir, self._folder = image, work_dir, folder
        self._generation = 0
        self.scored: Scored | None = None
        predicted, references = candidates(layers)
        self.pred = self._combo("predCombo", predicted)
        self.ref = self._combo("refCombo", references)
        self.pred.setCurrentIndex(next(i for i, layer in enumerate(predicted)
                                       if layer is not references[0]))
        self.values = {key: named(QLabel("–"), f"score_{key}") for key, *_ in FIGURES}
        self.preview = named(QLabel(alignment=Qt.AlignmentFlag.AlignCenter), "matchPreview")
        self.preview.setFixedSize(PREVIEW_SIDE, PREVIEW_SIDE)
        self.preview.setStyleSheet("background: white; border: 1px solid #999;")
        self.note = named(QLabel(wordWrap=True), "evaluateNote")
        self.save_button = named(QPushButton("Save report…"), "saveReportButton")
        self.save_button.clicked.connect(self.save_report)
        self._lay_out()
        for combo in (self.pred, self.ref):
            combo.currentIndexChanged.connect(lambda _index: self.evaluate())
        self.evaluate()

    def _combo(self, name: str, layers: list[Layer]) -> QComboBox:
        combo = named(QComboBox(), name)
        for layer in layers:
            combo.addItem(layer.title, layer)
        return combo

    def _lay_out(self) -> None:
        choice = QFormLayout()
        choice.addRow("Predicted", self.pred)
        choice.addRow("Reference", self.ref)
        figures = QGroupBox("Accuracy")
        form = QFormLayout(figures)
        for key, label, _, tip in FIGURES:
            name = QLabel(label)
            name.setToolTip(tip)
            form.addRow(name, self.values[key])
            self.values[key].setToolTip(tip)
        picture = QVBoxLayout()
        picture.addWidget(self.preview)
        picture.addWidget(_legend(), 0, Qt.AlignmentFlag.AlignCenter)
        picture.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(figures, 1)
        row.addLayout(picture)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.save_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(choice)
        layout.addLayout(row)
        layout.addWidget(self.note)
        layout.addWidget(buttons)

    def _grid(self, pred: Layer) -> tuple[Path, str] | None:
        """The raster to score on and how to name it: a result's own extent, else the image."""
        if pred.grid is not None:
            return pred.grid, f"{pred.name} (the segmented extent)"
        return (self._image.source, self._image.name) if self._image is not None else None

    def evaluate(self) -> None:
        """Score the chosen layers in the background; an answer to an older choice is
        dropped."""
        self._generation += 1
        self._show(None)
        pred, ref = self.pred.currentData(), self.ref.currentData()
        grid = self._grid(pred)
        if pred is ref or grid is None:
            self.note.setText("Choose two different layers." if pred is ref else
                              "Open the image these fields belong to: they are scored on "
                              "its pixels.")
            return
        self.note.setText(f"Scoring on the pixels of {grid[1]}…")
        generation, work_dir = self._generation, self._work_dir
        run_in_background(lambda: score_layers(pred, ref, grid[0], work_dir),
                          lambda scored: self._on_scored(generation, scored, grid[1]),
                          lambda error: self._on_failed(generation, error))

    def _current(self, generation: int) -> bool:
        return shiboken6.isValid(self) and generation == self._generation

    def _on_scored(self, generation: int, scored: Scored, where: str) -> None:
        if self._current(generation):
            self._show(scored)
            self.note.setText(f"Scored on the pixels of {where}.")
            self.evaluated.emit(scored)

    def _on_failed(self, generation: int, error: tuple[str, str]) -> None:
        if self._current(generation):
            self.note.setText("Evaluation failed.")
            show_error(self, *error)

    def _show(self, scored: Scored | None) -> None:
        """The figures and match map of `scored`; dashes while there is none."""
        self.scored = scored
        for key, _, fmt, _ in FIGURES:
            self.values[key].setText("–" if scored is None else
                                     fmt.format(getattr(scored.evaluation.score, key)))
        self.preview.setPixmap(QPixmap() if scored is None else QPixmap.fromImage(
            scored.matches.scaled(PREVIEW_SIDE - 2, PREVIEW_SIDE - 2,
                                  Qt.AspectRatioMode.KeepAspectRatio,
                                  Qt.TransformationMode.SmoothTransformation)))
        self.save_button.setEnabled(scored is not None)

    def save_report(self) -> None:
        """Ask for a .html, .md or .json file and write the report there (in the background)."""
        scored = self.scored
        assert scored is not None, "Save is enabled only with scores"
        suggestion = self._folder / f"{Path(scored.pred.name).stem}_accuracy.html"
        target = save_target(self, "Save report", suggestion, REPORT_FILTER)
        if target is None:
            return
        self.note.setText(f"Saving {target.name}…")
        run_in_background(lambda: write_report(scored.evaluation, target, scored.title),
                          self._on_saved,
                          lambda error: show_error(self if shiboken6.isValid(self) else None,
                                                   f"Report not saved: {error[0]}", error[1]))

    def _on_saved(self, path: Path) -> None:
        if shiboken6.isValid(self):
            self._folder = path.parent
            self.note.setText(f"Report saved to {path}")
            self.reportSaved.emit(path)
