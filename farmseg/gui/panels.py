"""Side panel widgets: the run settings and progress, and the selected field."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from farmseg.editing.layer import EditableLayer
from farmseg.gui.widgets import named
from farmseg.jobs import EtaClock, Progress
from farmseg.models.bundle import ModelBundle, bundle_argument, list_bundles, pixel_size_defaults
from farmseg.tools.progressbar import format_clock as clock_text

STAGE_TEXT = {"crop": "cropping %p%", "segment": "%v/%m tiles", "vectorize": "vectorizing %p%",
              "export": "finishing", "batch": "%v/%m blocks", "merge": "merging"}


@dataclass
class RunSettings:
    """What the Segment button runs with."""

    model: str  # `default` (the bundled model for the pixel size), a bundle name or folder
    device: str  # as chosen: "auto", "cpu" or "cuda"
    tile: int
    overlap: int
    min_area_ha: float
    view_extent: bool  # only the current view, else the whole image


class RunClock:
    """A run's elapsed time, and the ETA of its tile stage from the rate since that stage's
    first report (so start-up time does not skew it)."""

    def __init__(self) -> None:
        self._run = self._stage_clock = EtaClock()
        self._stage, self._first = "", 0

    def update(self, report: Progress) -> tuple[float, float | None]:
        if report.stage != self._stage:
            self._stage, self._first, self._stage_clock = report.stage, report.done, EtaClock()
        eta = None
        if report.stage == "segment":
            eta = self._stage_clock.eta(report.done - self._first, report.total - self._first)
        return self._run.elapsed(), eta


class _ListingCombo(QComboBox):
    """A combo box that refreshes its items just before it shows them."""

    def __init__(self, refresh: Callable[[], None]) -> None:
        super().__init__()
        self._refresh = refresh

    def showPopup(self) -> None:
        self._refresh()
        super().showPopup()


def _action_button(action: QAction) -> QToolButton:
    button = QToolButton()
    button.setDefaultAction(action)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return button


class RunPanel(QWidget):
    """Model, device, tiling, minimum area and extent; Segment and Cancel; progress."""

    def __init__(self, segment: QAction, cancel: QAction, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bundles: list[ModelBundle] = []
        self._gpu_known = False
        self.model = named(_ListingCombo(self.reload_models), "modelCombo")
        self.model.currentIndexChanged.connect(self._on_model_changed)
        self.model_info = named(QLabel(wordWrap=True), "modelInfo")
        self.model_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.device = named(QComboBox(), "deviceCombo")
        self.device.addItem("Auto", "auto")
        self.device.addItem("CPU", "cpu")
        self.tile = named(QSpinBox(minimum=64, maximum=4096, singleStep=32, suffix=" px"),
                          "tileSpin")
        self.overlap = named(QSpinBox(minimum=0, maximum=2048, singleStep=16, suffix=" px"),
                             "overlapSpin")
        self.tile.valueChanged.connect(lambda v: self.overlap.setMaximum(v // 2))
        self.min_area = named(QDoubleSpinBox(minimum=0.0, maximum=10000.0, decimals=2,
                                             singleStep=0.05, value=0.1, suffix=" ha"),
                              "minAreaSpin")
        self.extent = named(QComboBox(), "extentCombo")
        self.extent.addItems(["Whole image", "Current view"])
        self.progress = named(QProgressBar(textVisible=True), "progressBar")
        self.progress_text = named(QLabel(), "progressLabel")
        self.summary = named(QLabel(wordWrap=True), "summaryLabel")
        self._clock = RunClock()

        form = QFormLayout()
        form.addRow("Model", self.model)
        form.addRow(self.model_info)
        form.addRow("Device", self.device)
        form.addRow("Tile size", self.tile)
        form.addRow("Tile overlap", self.overlap)
        form.addRow("Minimum field", self.min_area)
        form.addRow("Extent", self.extent)
        buttons = QHBoxLayout()
        buttons.addWidget(_action_button(segment))
        buttons.addWidget(_action_button(cancel))
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_text)
        layout.addWidget(self.summary)
        self.reset_progress()

    def reload_models(self, select: str | None = None) -> None:
        """List bundled and user models again; keep `select` (a folder or name) if it exists.
        Tile and overlap return to the model's defaults only if the model changes."""
        previous = self.model.currentData()
        current = select or previous
        self._bundles = list_bundles()
        self.model.blockSignals(True)
        self.model.clear()
        for bundle in self._bundles:
            self.model.addItem(bundle.name, str(bundle.path))
            self.model.setItemData(self.model.count() - 1, bundle.describe(),
                                   Qt.ItemDataRole.ToolTipRole)
        index = self._index_of(current)
        index = index if index >= 0 else max(0, self._index_of("default"))
        self.model.setCurrentIndex(index)
        self.model.blockSignals(False)
        if self.model.currentData() != previous:
            self._on_model_changed()
        else:
            self._describe_model()

    def _index_of(self, wanted: str | None) -> int:
        for index, bundle in enumerate(self._bundles):
            if wanted in (str(bundle.path), bundle.name):
                return index
        return -1

    def current_bundle(self) -> ModelBundle | None:
        index = self.model.currentIndex()
        return self._bundles[index] if 0 <= index < len(self._bundles) else None

    def _describe_model(self) -> None:
        bundle = self.current_bundle()
        text = bundle.describe() if bundle else "no model found"
        if bundle is not None and bundle_argument(bundle) == "default":
            others = [f"{name} for {low:g} m pixels or coarser" if high == math.inf else
                      f"{name} for {low:g}-{high:g} m pixels"
                      for name, low, high in pixel_size_defaults() if name != "default"]
            if others:
                text += f". Images of other pixel sizes use {', '.join(others)}"
        self.model_info.setText(text)

    def _on_model_changed(self) -> None:
        self._describe_model()
        bundle = self.current_bundle()
        if bundle is not None:
            self.tile.setValue(bundle.tile)
            self.overlap.setValue(bundle.overlap)

    def set_gpu(self, name: str | None) -> None:
        """The device probe's answer: offer the GPU if there is one."""
        self._gpu_known = True
        if name and self.device.findData("cuda") < 0:
            self.device.addItem(f"GPU: {name}", "cuda")

    def run_device(self) -> str:
        """The device to run on: "auto" is decided here once the probe has answered, which
        spares the job the seconds the core needs to import torch to decide it."""
        chosen = str(self.device.currentData())
        if chosen != "auto" or not self._gpu_known:
            return chosen
        return "cuda" if self.device.findData("cuda") >= 0 else "cpu"

    def select_device(self, device: str) -> None:
        index = self.device.findData(device)
        if index >= 0:
            self.device.setCurrentIndex(index)

    def settings(self) -> RunSettings:
        bundle = self.current_bundle()
        return RunSettings(model=bundle_argument(bundle) if bundle else "default",
                           device=str(self.device.currentData()), tile=self.tile.value(),
                           overlap=self.overlap.value(), min_area_ha=self.min_area.value(),
                           view_extent=self.extent.currentIndex() == 1)

    def reset_progress(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.progress_text.clear()

    def show_starting(self, text: str) -> None:
        self.progress.setRange(0, 0)  # busy until the first report
        self.progress.setFormat("starting")
        self.summary.setText(text)
        self._clock = RunClock()

    def show_progress(self, report: Progress) -> None:
        elapsed, eta = self._clock.update(report)
        self.progress.setRange(0, max(1, report.total))
        self.progress.setValue(report.done)
        self.progress.setFormat(STAGE_TEXT.get(report.stage, report.stage))
        eta_text = f" · ETA {clock_text(eta)}" if eta is not None else ""
        self.progress_text.setText(f"elapsed {clock_text(elapsed)}{eta_text}")


class FieldInfo(QGroupBox):
    """Attributes of the selected fields: those of one, or the count and sums of several."""

    ROWS = (("field_id", "Field", "{}"), ("area_ha", "Area", "{:.2f} ha"),
            ("perim_m", "Perimeter", "{:,.0f} m"), ("confidence", "Confidence", "{:.2f}"),
            ("status", "Status", "{}"))

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Selected field", parent)
        self.setObjectName("fieldInfo")
        form = QFormLayout(self)
        self._values = {}
        for key, label, _ in self.ROWS:
            self._values[key] = named(QLabel("–"), f"field_{key}")
            form.addRow(label, self._values[key])

    def show_fields(self, layer: EditableLayer | None, ids: list[int]) -> None:
        """The attributes of the fields `ids` of `layer`; dashes for none."""
        texts = dict.fromkeys(self._values, "–")
        if layer is not None and len(ids) == 1:
            at = int(layer.index_of(ids)[0])
            texts = {key: fmt.format(layer.columns[key][at]) for key, _, fmt in self.ROWS}
        elif layer is not None and ids:
            columns = layer.rows(ids).columns
            texts.update(field_id=f"{len(ids)} fields",
                         area_ha=f"{columns['area_ha'].sum():.2f} ha",
                         perim_m=f"{columns['perim_m'].sum():,.0f} m",
                         confidence=f"{np.nanmean(columns['confidence']):.2f} (mean)"
                         if np.isfinite(columns["confidence"]).any() else "–")
        self.setTitle("Selected fields" if len(ids) > 1 else "Selected field")
        for key, text in texts.items():
            self._values[key].setText(text)
