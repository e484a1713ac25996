"""Segmenting from the window: the current image (Run > Segment) or a folder of scenes
(File > Segment a folder, the batch job), each in a job process under one JobController,
with the run panel's settings, progress and Cancel."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QMainWindow, QStatusBar

from farmseg.fields.clean import CleanSettings
from farmseg.gui.devices import batch_for
from farmseg.gui.dialogs import save_target, show_error
from farmseg.gui.job_control import JobController
from farmseg.gui.job_process import BatchTask, PixelWindow
from farmseg.gui.layers import Layer, result_layers
from farmseg.gui.map_layers import MapLayers
from farmseg.gui.map_view import MapView
from farmseg.gui.panels import RunPanel
from farmseg.gui.settings import Prefs, save_window
from farmseg.gui.worker import JobOutcome, JobRequest, ProcessWorker, SegmentWorker
from farmseg.models.engine_choice import EngineRequest
from farmseg.pipeline.segment import SegmentOptions, TileOptions

LOG = logging.getLogger("farmseg.gui")
PROBABILITY_OPACITY = 0.35
GEOPACKAGE = "GeoPackage (*.gpkg)"


class Segmenter(QObject):
    """Starts runs on the images of `layers` with the settings of `panel` (temporary files
    in `work_dir`); results are added to the map (a batch's merged layer through
    `open_fields`). `confirm(title)`
    is asked before a result replaces fields that may have unsaved edits. `ended`
    follows every run, once it has stopped."""

    ended = Signal()

    def __init__(self, window: QMainWindow, view: MapView, layers: MapLayers, panel: RunPanel,
                 prefs: Prefs, work_dir: Path, confirm: Callable[[str], bool],
                 open_fields: Callable[[Path], None]) -> None:
        super().__init__(window)
        self._window, self._view, self._layers, self._panel = window, view, layers, panel
        self._work_dir = work_dir
        self._prefs, self._confirm, self._open_fields = prefs, confirm, open_fields
        self.job = JobController(self)
        self._image: Layer | None = None
        self._on_result: Callable[[Any], None] = lambda _: None
        self.job.progress.connect(panel.show_progress)
        self.job.logged.connect(lambda text: self._status().showMessage(text, 10000))
        self.job.finished.connect(lambda outcome: self._on_result(outcome))
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.ended.connect(self._on_ended)

    def _status(self) -> QStatusBar:
        return self._window.statusBar()

    def _refused(self) -> bool:
        if self.job.is_running():
            self._status().showMessage(
                "A segmentation is already running: wait for it, or cancel it (Esc).", 8000)
        return self.job.is_running()

    def segment(self) -> None:
        """Run the current model on the current image with the panel's settings."""
        image = self._layers.current_image()
        if self._refused() or image is None:
            if image is None:
                self._status().showMessage("Open an image first (Ctrl+O).", 8000)
            return
        run = self._panel.settings()
        window = None
        if run.view_extent:
            window = image.raster.visible_window(self._view.visible_rect())
            if window is None:
                show_error(self._window, "The view shows none of the image: zoom to it, or "
                                         "choose 'Whole image'.")
                return
        if not self._confirm("Segment again"):
            return
        self._image = image
        self._start(image.source, window, None, self._show_segmented)
        save_window(self._prefs, self._window, self._panel)

    def segment_with(self, source: Path, model: str, done: Callable[[JobOutcome], None]
                     ) -> bool:
        """Run `model` on the whole image `source` (the panel's other settings); `done` gets
        the outcome, `ended` follows. False when another run is going on."""
        if self._refused():
            return False

        def finished(outcome: JobOutcome) -> None:
            self._report(source.name, outcome)
            done(outcome)

        self._start(source, None, model, finished)
        return True

    def _start(self, source: Path, window: PixelWindow | None, model: str | None,
               on_result: Callable[[JobOutcome], None]) -> None:
        job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=self._work_dir))
        options = self.options(source, job_dir / "probabilities.tif", job_dir)
        options = replace(options, model=model) if model else options
        self._on_result = on_result
        self._panel.show_starting(f"Segmenting {source.name}…")
        LOG.info("segment %s with %s (model %s)", source, self._panel.settings(), options.model)
        self.job.start(SegmentWorker(JobRequest(options, window, job_dir, self._view.y_sign)))

    def options(self, source: Path, prob_out: Path | None, work_dir: Path | None,
                output: Path | None = None) -> SegmentOptions:
        """What the core's jobs run with: the panel's settings on `source`."""
        run = self._panel.settings()
        device = self._panel.run_device()
        return SegmentOptions(
            input=source, output=output, model=run.model, engine=EngineRequest(device=device),
            tiles=TileOptions(run.tile, run.overlap, batch_for(device)),
            clean=CleanSettings(min_area_ha=run.min_area_ha), prob_out=prob_out,
            overwrite=output is not None, work_dir=work_dir)

    def segment_folder(self, folder: Path | None = None, output: Path | None = None) -> None:
        """Segment every raster of a folder into one GeoPackage (asked for when not given)
        and open the merged layer for editing."""
        if self._refused():
            return
        if folder is None:
            name = QFileDialog.getExistingDirectory(self._window, "Segment a folder",
                                                    self._prefs.last_folder)
            folder = Path(name) if name else None
        if folder is not None and output is None:
            output = save_target(self._window, "Save the fields of the folder",
                                 folder.parent / f"{folder.name}_fields.gpkg", GEOPACKAGE)
        if folder is None or output is None:
            return
        self._prefs.last_folder = str(output.parent)
        task = BatchTask(folder, self.options(folder, None, None, output))
        self._on_result = lambda _result: self._open_fields(output)
        self._panel.show_starting(f"Segmenting the scenes of {folder.name}…")
        LOG.info("segment folder %s into %s", folder, output)
        self.job.start(ProcessWorker(task, "batch segmentation"))

    def cancel(self) -> None:
        if self.job.is_running():
            self.job.cancel()
            self._panel.summary.setText("Cancelling…")

    def _show_segmented(self, outcome: JobOutcome) -> None:
        image = self._image
        assert image is not None
        for old in [layer for layer in self._layers.all()
                    if layer.kind != "image" and layer.source == image.source]:
            self._layers.remove(old)
        prob, fields = result_layers(outcome, image)
        self._layers.add(prob, PROBABILITY_OPACITY)
        self._layers.add(fields)
        self._report(image.name, outcome)

    def _report(self, name: str, outcome: JobOutcome) -> None:
        """Say what a run found, in the run panel and the status bar."""
        layer = outcome.result.layer
        summary = (f"{len(layer)} fields, {layer.total_area_ha:,.1f} ha, "
                   f"{outcome.seconds:.1f} s ({outcome.result.engine})")
        self._panel.summary.setText(summary)
        self._status().showMessage(f"{name}: {summary}", 15000)
        LOG.info("segmented %s: %s", name, summary)

    def _on_failed(self, reason: str, details: str) -> None:
        self._panel.summary.setText("Segmentation failed.")
        show_error(self._window, f"Segmentation failed: {reason}", details)

    def _on_cancelled(self) -> None:
        self._panel.summary.setText("Cancelled.")
        self._status().showMessage("Segmentation cancelled.", 8000)

    def _on_ended(self) -> None:
        self._image, self._on_result = None, lambda _: None
        self._panel.reset_progress()
        self.ended.emit()
