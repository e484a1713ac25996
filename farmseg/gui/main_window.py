"""The main window: map, layers, run panel, menus and the segmentation workflow."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QIcon
from PySide6.QtWidgets import QDockWidget, QMainWindow, QStyle, QVBoxLayout, QWidget

from farmseg import __version__
from farmseg.fields.clean import CleanSettings
from farmseg.gui.devices import batch_for, gpu_name
from farmseg.gui.dialogs import ask, show_about, show_error
from farmseg.gui.evaluation import EvaluateDialog, Scored, can_evaluate
from farmseg.gui.field_export import export_fields
from farmseg.gui.finetune import FineTuneDialog
from farmseg.gui.job_control import JobController
from farmseg.gui.layer_panel import LayerPanel
from farmseg.gui.layers import Layer, picture_layer, result_layers
from farmseg.gui.logs import setup_logging
from farmseg.gui.map_layers import MapLayers
from farmseg.gui.map_view import MapView
from farmseg.gui.menus import RecentMenu, add_menu, make_action
from farmseg.gui.opening import Opener
from farmseg.gui.panels import FieldInfo, RunPanel, RunSettings
from farmseg.gui.settings import Prefs, restore_window, save_window
from farmseg.gui.status import MapStatus
from farmseg.gui.tasks import run_in_background
from farmseg.gui.worker import JobOutcome, JobRequest, SegmentWorker
from farmseg.models.bundle import app_root
from farmseg.models.engine_choice import EngineRequest
from farmseg.pipeline.segment import SegmentOptions, TileOptions

LOG = logging.getLogger("farmseg.gui")
ICON = app_root() / "resources" / "farmseg.svg"
PROBABILITY_OPACITY = 0.35
MATCHES_OPACITY = 0.6


class MainWindow(QMainWindow):
    """farmseg's main window. `work_dir` holds each run's temporary files (default: a new
    temporary folder, removed on close)."""

    jobEnded = Signal()  # a segmentation finished, failed or was cancelled; actions updated

    def __init__(self, work_dir: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        setup_logging()
        self.prefs = Prefs()
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="farmseg-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.job = JobController(self)
        self._job_image: Layer | None = None
        self._close_when_idle = False

        if ICON.is_file():
            self.setWindowIcon(QIcon(str(ICON)))
        self.resize(1280, 800)
        self.setAcceptDrops(True)
        self.view = MapView(self)
        self.setCentralWidget(self.view)
        self._create_actions()
        self.layer_panel = LayerPanel()
        self.run_panel = RunPanel(self.actionSegment, self.actionCancel)
        self.field_info = FieldInfo()
        self.map_status = MapStatus(self.statusBar())
        self.map_layers = MapLayers(self.view, self.layer_panel, self.field_info, self)
        self.opener = Opener(self, self.view, self.map_layers, self.prefs, self.statusBar())
        self._create_docks()
        self._create_menus()
        self._connect()
        restore_window(self.prefs, self, self.run_panel)
        self._update_actions()
        self._update_title()
        run_in_background(gpu_name, self._on_gpu_probed,
                          lambda error: LOG.info("no GPU: %s", error[0]))

    # ----------------------------------------------------------------- construction

    def _create_actions(self) -> None:
        pix = QStyle.StandardPixmap
        self.actionOpen = make_action(self, "actionOpen", "&Open…", self.open_dialog, "Ctrl+O",
                                      pix.SP_DialogOpenButton, "Open GeoTIFF images as layers")
        self.actionAddVector = make_action(
            self, "actionAddVector", "Add &vector layer…", self.add_vector_dialog,
            "Ctrl+Shift+O",
            tip="Show polygons (GeoJSON, Shapefile, GeoPackage, KML), e.g. reference fields")
        self.actionSegment = make_action(self, "actionSegment", "&Segment", self.segment,
                                         "Ctrl+R", pix.SP_MediaPlay,
                                         "Find the fields in the image")
        self.actionCancel = make_action(self, "actionCancel", "&Cancel", self.cancel, "Esc",
                                        pix.SP_MediaStop, "Stop the running segmentation")
        self.actionExport = make_action(
            self, "actionExport", "&Export fields…", self.export, "Ctrl+E",
            pix.SP_DialogSaveButton, "Save the fields as GeoJSON, Shapefile, GeoPackage or KML")
        self.actionFineTune = make_action(self, "actionFineTune", "&Fine-tune…", self.fine_tune,
                                          tip="Train a model further on your own fields")
        self.actionEvaluate = make_action(
            self, "actionEvaluate", "&Evaluate against reference…", self.evaluate,
            tip="Score fields against reference polygons added as a vector layer")
        self.actionZoomLayer = make_action(self, "actionZoomLayer", "&Zoom to layer",
                                           self.zoom_to_layer, "Ctrl+0",
                                           pix.SP_FileDialogContentsView,
                                           "Show the whole current layer")
        self.actionZoomIn = make_action(self, "actionZoomIn", "Zoom &in",
                                        lambda: self.view.zoom_by(2.0), "Ctrl++")
        self.actionZoomOut = make_action(self, "actionZoomOut", "Zoom &out",
                                         lambda: self.view.zoom_by(0.5), "Ctrl+-")
        self.actionQuit = make_action(self, "actionQuit", "&Quit", self.close, "Ctrl+Q")
        self.actionAbout = make_action(self, "actionAbout", "&About farmseg", self.about, "F1")

    def _create_docks(self) -> None:
        side = QWidget()
        column = QVBoxLayout(side)
        column.addWidget(self.run_panel)
        column.addWidget(self.field_info)
        column.addStretch(1)
        docks = []
        for title, name, widget, area in (
                ("Layers", "layersDock", self.layer_panel, Qt.DockWidgetArea.LeftDockWidgetArea),
                ("Segment", "segmentDock", side, Qt.DockWidgetArea.RightDockWidgetArea)):
            dock = QDockWidget(title, self)
            dock.setObjectName(name)
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            docks.append(dock)
        self.resizeDocks(docks, [220, 300], Qt.Orientation.Horizontal)
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolBar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.actionOpen, self.actionSegment, self.actionCancel,
                       self.actionExport, self.actionZoomLayer):
            toolbar.addAction(action)

    def _create_menus(self) -> None:
        bar = self.menuBar()
        add_menu(bar, "&File", [self.actionOpen, self.actionAddVector,
                                RecentMenu(self.prefs, self.open_file, self), None,
                                self.actionExport, None, self.actionQuit])
        docks = [dock.toggleViewAction() for dock in self.findChildren(QDockWidget)]
        add_menu(bar, "&View", [self.actionZoomLayer, self.actionZoomIn, self.actionZoomOut,
                                None, *docks])
        add_menu(bar, "&Run", [self.actionSegment, self.actionCancel])
        add_menu(bar, "&Tools", [self.actionEvaluate, self.actionFineTune])
        add_menu(bar, "&Help", [self.actionAbout])

    def _connect(self) -> None:
        self.view.cursorMoved.connect(
            lambda scene: self.map_status.set_cursor(scene.x(), self.view.y_sign * scene.y()))
        self.view.viewChanged.connect(
            lambda: self.map_status.set_zoom(self.view.screen_px_per_pixel()))
        self.layer_panel.currentChanged.connect(self._on_current_layer)
        self.map_layers.changed.connect(self._update_actions)
        self.map_layers.changed.connect(self._update_title)
        self.job.started.connect(self._update_actions)
        self.job.progress.connect(self.run_panel.show_progress)
        self.job.logged.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.job.finished.connect(self._on_succeeded)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.ended.connect(self._on_job_ended)

    def _on_gpu_probed(self, name: str | None) -> None:
        self.run_panel.set_gpu(name)
        if name and self.prefs.device == "cuda":
            self.run_panel.select_device("cuda")

    # ----------------------------------------------------------------- layers

    def layers(self) -> list[Layer]:
        """All layers, top to bottom."""
        return self.map_layers.all()

    def open_dialog(self) -> None:
        self.opener.open_dialog()

    def add_vector_dialog(self) -> None:
        self.opener.add_vector_dialog()

    def open_file(self, path: str | Path) -> None:
        """Open a raster, or add a vector file (by its suffix)."""
        self.opener.open_file(path)

    def open_raster(self, path: str | Path) -> Layer | None:
        """Open a raster as the top layer; on failure show why and return None."""
        return self.opener.open_raster(path)

    def add_vector(self, path: str | Path) -> None:
        """Add the polygons of a vector file as an outline layer (read in the background)."""
        self.opener.add_vector(path)

    def remove_layer(self, layer: Layer) -> None:
        """Take a layer off the map; delete its temporary files once nothing uses them."""
        self.map_layers.remove(layer)

    def zoom_to_layer(self) -> None:
        self.map_layers.zoom_to_current()

    def _update_title(self) -> None:
        image = self.map_layers.current_image()
        self.setWindowTitle(f"farmseg {__version__}" + (f" — {image.name}" if image else ""))

    def _on_current_layer(self, layer: Layer | None) -> None:
        self.map_status.set_layer(layer.crs if layer else None,
                                  layer.pixel_size if layer else None)
        self._update_title()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_file(url.toLocalFile())
        event.acceptProposedAction()

    # ----------------------------------------------------------------- segmentation

    def segment(self) -> None:
        """Run the current model on the current image with the panel's settings."""
        if self.job.is_running():
            self.statusBar().showMessage(
                "A segmentation is already running: wait for it, or cancel it (Esc).", 8000)
            return
        image = self.map_layers.current_image()
        if image is None:
            self.statusBar().showMessage("Open an image first (Ctrl+O).", 8000)
            return
        run = self.run_panel.settings()
        window = None
        if run.view_extent:
            window = image.raster.visible_window(self.view.visible_rect())
            if window is None:
                show_error(self, "The view shows none of the image: zoom to it, or choose "
                                 "'Whole image'.")
                return
        job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_dir))
        options = self._segment_options(image, run, job_dir)
        self._job_image = image
        self.run_panel.show_starting(f"Segmenting {image.name}…")
        LOG.info("segment %s with %s", image.source, run)
        self.job.start(SegmentWorker(JobRequest(options, window, job_dir, self.view.y_sign)))
        save_window(self.prefs, self, self.run_panel)

    def _segment_options(self, image: Layer, run: RunSettings, job_dir: Path) -> SegmentOptions:
        """What the core's segment_job runs with: the panel's settings on `image`, every
        file inside `job_dir`."""
        device = self.run_panel.run_device()
        return SegmentOptions(
            input=image.source, model=run.model, engine=EngineRequest(device=device),
            tiles=TileOptions(run.tile, run.overlap, batch_for(device)),
            clean=CleanSettings(min_area_ha=run.min_area_ha),
            prob_out=job_dir / "probabilities.tif", work_dir=job_dir)

    def cancel(self) -> None:
        if self.job.is_running():
            self.job.cancel()
            self.run_panel.summary.setText("Cancelling…")

    def is_running(self) -> bool:
        return self.job.is_running()

    def _on_succeeded(self, outcome: JobOutcome) -> None:
        image = self._job_image
        assert image is not None
        for old in [layer for layer in self.layers()
                    if layer.kind != "image" and layer.source == image.source]:
            self.remove_layer(old)
        prob, fields = result_layers(outcome, image)
        self.map_layers.add(prob, PROBABILITY_OPACITY)
        self.map_layers.add(fields)
        layer = outcome.result.layer
        summary = (f"{len(layer)} fields, {layer.total_area_ha:,.1f} ha, "
                   f"{outcome.seconds:.1f} s ({outcome.result.engine})")
        self.run_panel.summary.setText(summary)
        self.statusBar().showMessage(f"{image.name}: {summary}", 15000)
        LOG.info("segmented %s: %s", image.source, summary)

    def _on_failed(self, reason: str, details: str) -> None:
        self.run_panel.summary.setText("Segmentation failed.")
        show_error(self, f"Segmentation failed: {reason}", details)

    def _on_cancelled(self) -> None:
        self.run_panel.summary.setText("Cancelled.")
        self.statusBar().showMessage("Segmentation cancelled.", 8000)

    def _on_job_ended(self) -> None:
        self._job_image = None
        self.run_panel.reset_progress()
        self._update_actions()
        self.jobEnded.emit()
        if self._close_when_idle:
            self.close()

    def _update_actions(self) -> None:
        kinds = {layer.kind for layer in self.layers()}
        running = self.job.is_running()
        self.actionSegment.setEnabled(not running and "image" in kinds)
        self.actionCancel.setEnabled(running)
        self.actionExport.setEnabled("fields" in kinds)
        self.actionZoomLayer.setEnabled(bool(kinds))
        self.actionEvaluate.setEnabled(can_evaluate(self.layers()))

    # ----------------------------------------------------------------- export, dialogs

    def export(self) -> None:
        """Save the current (else the newest) field layer through a save dialog."""
        layer = self.map_layers.current_or_top("fields")
        if layer is not None:
            export_fields(self, layer, self.prefs, self.statusBar())

    def fine_tune(self) -> None:
        """Open the fine-tune dialog: labels may be drawn over an open image (current first);
        a model it saves joins the model list (and, when complete, becomes current)."""
        current = self.map_layers.current_image()
        images = [layer.source for layer in self.map_layers.of_kind("image")]
        images.sort(key=lambda source: current is None or source != current.source)
        dialog = FineTuneDialog(self, images, self.run_panel.settings().model)
        dialog.modelSaved.connect(
            lambda path, complete: self.run_panel.reload_models(path if complete else None))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def evaluate(self) -> None:
        """Open the dialog that scores a field layer against a reference vector layer."""
        dialog = EvaluateDialog(self, self.layers(), self.map_layers.current_image(),
                                self.work_dir, Path(self.prefs.last_folder))
        dialog.evaluated.connect(self._show_matches)
        dialog.reportSaved.connect(self._on_report_saved)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def _show_matches(self, scored: Scored) -> None:
        """Put an evaluation's match map on the map, in place of an older one of the pair."""
        for old in [layer for layer in self.map_layers.of_kind("matches")
                    if layer.name == scored.title]:
            self.remove_layer(old)
        self.map_layers.add(picture_layer(scored.title, scored.matches,
                                          scored.evaluation.grid, scored.pred,
                                          self.view.y_sign), MATCHES_OPACITY)
        LOG.info("%s: %s", scored.title, scored.evaluation.score.summary())

    def _on_report_saved(self, path: Path) -> None:
        self.prefs.last_folder = str(path.parent)
        LOG.info("accuracy report written to %s", path)

    def about(self) -> None:
        show_about(self, self.run_panel.current_bundle())

    # ----------------------------------------------------------------- closing

    def shut_down(self) -> None:
        """Close without asking, cancelling a running job first (Ctrl+C, SIGTERM)."""
        self._close_when_idle = True
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.job.is_running():
            if self._close_when_idle or ask(self, "Quit farmseg",
                                            "A segmentation is running. Cancel it and quit?"):
                self._close_when_idle = True
                self.job.cancel()
            event.ignore()
            return
        save_window(self.prefs, self, self.run_panel)
        for layer in self.layers():
            self.remove_layer(layer)
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        super().closeEvent(event)
