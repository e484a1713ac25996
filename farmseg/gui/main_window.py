"""The main window: map, layers, run panel, menus and the segmentation workflow."""

from __future__ import annotations

import logging
import shutil
import tempfile
import traceback
from pathlib import Path

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QIcon,
    QImage,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from farmseg import __version__
from farmseg.errors import FarmsegError
from farmseg.fields.export import write_fields
from farmseg.geoio.raster import RasterSource
from farmseg.gui.detail import DetailLoader
from farmseg.gui.devices import batch_for, gpu_name
from farmseg.gui.dialogs import (
    POLYGON_FILTER,
    RASTER_FILTER,
    VECTOR_SUFFIXES,
    ask,
    export_target,
    show_about,
    show_error,
)
from farmseg.gui.evaluation import EvaluateDialog, Scored, can_evaluate
from farmseg.gui.finetune import FineTuneDialog
from farmseg.gui.items import FieldShape
from farmseg.gui.layer_panel import LayerPanel
from farmseg.gui.layers import (
    Layer,
    Outlines,
    image_layer,
    load_preview,
    picture_layer,
    read_outlines,
    result_layers,
    vector_layer,
)
from farmseg.gui.logs import setup_logging
from farmseg.gui.map_view import MapView
from farmseg.gui.panels import FieldInfo, RunPanel
from farmseg.gui.render import Style, overview_is_quick
from farmseg.gui.settings import Prefs
from farmseg.gui.status import MapStatus
from farmseg.gui.tasks import describe, run_in_background
from farmseg.gui.worker import JobOutcome, JobRequest, SegmentJob
from farmseg.jobs import Progress
from farmseg.models.bundle import app_root
from farmseg.pipeline.segment import SegmentOptions

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
        self._job: SegmentJob | None = None
        self._job_image: Layer | None = None
        self._close_when_idle = False

        if ICON.is_file():
            self.setWindowIcon(QIcon(str(ICON)))
        self.resize(1280, 800)
        self.setAcceptDrops(True)
        self.view = MapView(self)
        self.setCentralWidget(self.view)
        self._detail = DetailLoader(self.view)
        self._create_actions()
        self.layer_panel = LayerPanel()
        self.run_panel = RunPanel(self.actionSegment, self.actionCancel)
        self.field_info = FieldInfo()
        self.map_status = MapStatus(self.statusBar())
        self._create_docks()
        self._create_menus()
        self._connect()
        self._restore_settings()
        self._update_actions()
        self._update_title()
        run_in_background(gpu_name, self._on_gpu_probed,
                          lambda error: LOG.info("no GPU: %s", error[0]))

    # ----------------------------------------------------------------- construction

    def _action(self, name: str, text: str, slot, shortcut: str | None = None,
                icon: QStyle.StandardPixmap | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        action.setStatusTip(tip)
        action.setToolTip(f"{tip} ({shortcut})" if shortcut and tip else tip or text)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _create_actions(self) -> None:
        pix = QStyle.StandardPixmap
        self.actionOpen = self._action("actionOpen", "&Open…", self.open_dialog, "Ctrl+O",
                                       pix.SP_DialogOpenButton, "Open GeoTIFF images as layers")
        self.actionAddVector = self._action(
            "actionAddVector", "Add &vector layer…", self.add_vector_dialog, "Ctrl+Shift+O",
            tip="Show polygons (GeoJSON, Shapefile, GeoPackage, KML), e.g. reference fields")
        self.actionSegment = self._action("actionSegment", "&Segment", self.segment, "Ctrl+R",
                                          pix.SP_MediaPlay, "Find the fields in the image")
        self.actionCancel = self._action("actionCancel", "&Cancel", self.cancel, "Esc",
                                         pix.SP_MediaStop, "Stop the running segmentation")
        self.actionExport = self._action("actionExport", "&Export fields…", self.export,
                                         "Ctrl+E", pix.SP_DialogSaveButton,
                                         "Save the fields as GeoJSON, Shapefile, GeoPackage or KML")
        self.actionFineTune = self._action("actionFineTune", "&Fine-tune…", self.fine_tune,
                                           tip="Train a model further on your own fields")
        self.actionEvaluate = self._action(
            "actionEvaluate", "&Evaluate against reference…", self.evaluate,
            tip="Score fields against reference polygons added as a vector layer")
        self.actionZoomLayer = self._action("actionZoomLayer", "&Zoom to layer",
                                            self.zoom_to_layer, "Ctrl+0",
                                            pix.SP_FileDialogContentsView,
                                            "Show the whole current layer")
        self.actionZoomIn = self._action("actionZoomIn", "Zoom &in",
                                         lambda: self.view.zoom_by(2.0), "Ctrl++")
        self.actionZoomOut = self._action("actionZoomOut", "Zoom &out",
                                          lambda: self.view.zoom_by(0.5), "Ctrl+-")
        self.actionQuit = self._action("actionQuit", "&Quit", self.close, "Ctrl+Q")
        self.actionAbout = self._action("actionAbout", "&About farmseg", self.about, "F1")

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
        menu = bar.addMenu("&File")
        menu.addAction(self.actionOpen)
        menu.addAction(self.actionAddVector)
        self._recent_menu = menu.addMenu("Open &Recent")
        self._recent_menu.aboutToShow.connect(self._fill_recent_menu)
        menu.addSeparator()
        menu.addAction(self.actionExport)
        menu.addSeparator()
        menu.addAction(self.actionQuit)
        menu = bar.addMenu("&View")
        for action in (self.actionZoomLayer, self.actionZoomIn, self.actionZoomOut):
            menu.addAction(action)
        menu.addSeparator()
        for dock in self.findChildren(QDockWidget):
            menu.addAction(dock.toggleViewAction())
        menu = bar.addMenu("&Run")
        menu.addAction(self.actionSegment)
        menu.addAction(self.actionCancel)
        menu = bar.addMenu("&Tools")
        menu.addAction(self.actionEvaluate)
        menu.addAction(self.actionFineTune)
        bar.addMenu("&Help").addAction(self.actionAbout)

    def _connect(self) -> None:
        self.view.cursorMoved.connect(self._on_cursor)
        self.view.clicked.connect(self._on_map_clicked)
        self.view.viewChanged.connect(
            lambda: self.map_status.set_zoom(self.view.screen_px_per_pixel()))
        self.layer_panel.currentChanged.connect(self._on_current_layer)
        self.layer_panel.removeRequested.connect(self.remove_layer)

    def _fill_recent_menu(self) -> None:
        self._recent_menu.clear()
        for path in self.prefs.recent_files:
            self._recent_menu.addAction(path, lambda p=path: self.open_file(p))
        if not self._recent_menu.isEmpty():
            self._recent_menu.addSeparator()
        self._recent_menu.addAction("Clear list", self.prefs.clear_recent)

    # ----------------------------------------------------------------- settings

    def _restore_settings(self) -> None:
        prefs = self.prefs
        if not prefs.geometry.isEmpty():
            self.restoreGeometry(prefs.geometry)
        if not prefs.state.isEmpty():
            self.restoreState(prefs.state)
        self.run_panel.reload_models(prefs.model)
        self.run_panel.select_device(prefs.device)
        if prefs.tile > 0:
            self.run_panel.tile.setValue(prefs.tile)
        if prefs.overlap >= 0:
            self.run_panel.overlap.setValue(prefs.overlap)

    def _save_settings(self) -> None:
        run = self.run_panel.settings()
        self.prefs.geometry = self.saveGeometry()
        self.prefs.state = self.saveState()
        self.prefs.model = run.model
        self.prefs.device = run.device
        self.prefs.tile = run.tile
        self.prefs.overlap = run.overlap
        self.prefs.store.sync()

    def _on_gpu_probed(self, name: str | None) -> None:
        self.run_panel.set_gpu(name)
        if name and self.prefs.device == "cuda":
            self.run_panel.select_device("cuda")

    # ----------------------------------------------------------------- layers

    def layers(self) -> list[Layer]:
        """All layers, top to bottom."""
        return self.layer_panel.layers()

    def open_dialog(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self, "Open images", self.prefs.last_folder,
                                                RASTER_FILTER)
        for name in names:
            self.open_raster(name)

    def open_file(self, path: str | Path) -> None:
        """Open a raster, or add a vector file (by its suffix)."""
        if Path(path).suffix.lower() in VECTOR_SUFFIXES:
            self.add_vector(path)
        else:
            self.open_raster(path)

    def open_raster(self, path: str | Path) -> Layer | None:
        """Open a raster as the top layer; on failure show why and return None."""
        path = Path(path)
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            with RasterSource(path) as source:
                if not self.layers():
                    self.view.y_sign = -1.0 if source.grid.transform.e < 0 else 1.0
                layer = image_layer(source, self.view.y_sign)
                quick = overview_is_quick(source.dataset)
                summary = (f"{source.width} × {source.height} px, {source.count} band(s) "
                           f"{source.dtype}")
            if quick:
                layer.item.set_base(*load_preview(path))
        except FarmsegError as exc:
            show_error(self, str(exc))
            return None
        except Exception as exc:  # GDAL can fail in many ways on damaged files
            show_error(self, f"{path}: cannot display ({describe(exc)})",
                       traceback.format_exc())
            return None
        finally:
            QApplication.restoreOverrideCursor()
        if not quick:
            summary += "; reading a preview (add overviews to open it faster)"
        self._add_opened(layer, summary)
        if not quick:  # a big raster without overviews: decimate it in the background
            run_in_background(lambda: load_preview(path),
                              lambda preview: self._on_preview(layer, preview),
                              lambda error: show_error(self, f"{path}: cannot display "
                                                             f"({error[0]})", error[1]))
        return layer

    def add_vector_dialog(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self, "Add vector layers",
                                                self.prefs.last_folder, POLYGON_FILTER)
        for name in names:
            self.add_vector(name)

    def add_vector(self, path: str | Path) -> None:
        """Add the polygons of a vector file as an outline layer, in the map's CRS (read in
        the background); on failure show why."""
        path = Path(path)
        like = self._current_image() or next(reversed(self.layers()), None)
        crs, sign = (like.crs if like else None), self.view.y_sign
        self.statusBar().showMessage(f"Reading {path.name}…")
        run_in_background(lambda: read_outlines(path, crs, sign),
                          lambda outlines: self._on_outlines(path, outlines, like),
                          lambda error: show_error(self, *error))

    def _on_outlines(self, path: Path, outlines: Outlines, like: Layer | None) -> None:
        layer = vector_layer(path, outlines, like)
        self._add_opened(layer, f"{layer.item.count} polygons")

    def _add_opened(self, layer: Layer, summary: str) -> None:
        """Add a layer read from a file; zoom to it if it is the first; remember the file."""
        first = not self.layers()
        self._add_layer(layer)
        if first:
            self.zoom_to_layer()
        self.prefs.add_recent(layer.source)
        self.prefs.last_folder = str(layer.source.parent)
        LOG.info("opened %s (%s)", layer.source, summary)
        self.statusBar().showMessage(f"Opened {layer.source.name}: {summary}", 8000)

    def _on_preview(self, layer: Layer, preview: tuple[Style, QImage]) -> None:
        if layer in self.layers():
            layer.item.set_base(*preview)
            self._detail.refresh()

    def _add_layer(self, layer: Layer, opacity: float = 1.0) -> None:
        self.view.scene().addItem(layer.item)
        self.layer_panel.add(layer, opacity)
        self._update_extent()
        self._update_actions()

    def remove_layer(self, layer: Layer) -> None:
        """Take a layer off the map; delete its temporary files once nothing uses them."""
        self.layer_panel.remove(layer)
        self.view.scene().removeItem(layer.item)
        if layer.kind == "fields":
            self.field_info.show_field(None, None)
        if layer.job_dir is not None and all(other.job_dir != layer.job_dir
                                             for other in self.layers()):
            shutil.rmtree(layer.job_dir, ignore_errors=True)
        self._update_extent()
        self._update_actions()

    def _update_extent(self) -> None:
        layers = self.layers()
        if layers:
            extent = layers[0].item.sceneBoundingRect()
            for layer in layers[1:]:
                extent = extent.united(layer.item.sceneBoundingRect())
            self.view.set_extent(extent, min(layer.pixel_size for layer in layers))
        self._update_title()

    def _update_title(self) -> None:
        image = self._current_image()
        self.setWindowTitle(f"farmseg {__version__}" + (f" — {image.name}" if image else ""))

    def _current_image(self) -> Layer | None:
        """The image of the current layer, else the top image."""
        images = [layer for layer in self.layers() if layer.kind == "image"]
        current = self.layer_panel.current()
        if current is not None:
            images.sort(key=lambda layer: layer.source != current.source)
        return images[0] if images else None

    def zoom_to_layer(self) -> None:
        layer = self.layer_panel.current() or next(iter(self.layers()), None)
        if layer is not None:
            self.view.zoom_to(layer.item.sceneBoundingRect())

    def _on_current_layer(self, layer: Layer | None) -> None:
        self.map_status.set_layer(layer.crs if layer else None,
                                  layer.pixel_size if layer else None)
        self._update_title()

    def _on_cursor(self, scene: QPointF) -> None:
        self.map_status.set_cursor(scene.x(), self.view.y_sign * scene.y())

    def _on_map_clicked(self, scene: QPointF) -> None:
        """Select the field under the click and show its attributes."""
        fields = [layer for layer in self.layers() if layer.kind == "fields"]
        shape = next((item for item in self.view.scene().items(scene)
                      if isinstance(item, FieldShape)
                      and any(item.parentItem() is layer.item for layer in fields)), None)
        for layer in fields:
            mine = shape if shape is not None and shape.parentItem() is layer.item else None
            layer.item.select(mine)
            if mine is not None:
                self.field_info.show_field(layer.fields, mine.index)
        if shape is None:
            self.field_info.show_field(None, None)

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
        if self._job is not None:
            self.statusBar().showMessage(
                "A segmentation is already running: wait for it, or cancel it (Esc).", 8000)
            return
        image = self._current_image()
        if image is None:
            self.statusBar().showMessage("Open an image first (Ctrl+O).", 8000)
            return
        run = self.run_panel.settings()
        window = None
        if run.view_extent:
            window = image.item.visible_window(self.view.visible_rect())
            if window is None:
                show_error(self, "The view shows none of the image: zoom to it, or choose "
                                 "'Whole image'.")
                return
        job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_dir))
        device = self.run_panel.run_device()
        options = SegmentOptions(
            input=image.source, model=run.model, device=device, tile=run.tile,
            overlap=run.overlap, batch=batch_for(device), min_area_ha=run.min_area_ha,
            prob_out=job_dir / "probabilities.tif", work_dir=job_dir)
        self._job = SegmentJob(JobRequest(options, window, job_dir, self.view.y_sign), self)
        worker = self._job.worker
        worker.progress.connect(self._on_progress)
        worker.logged.connect(self._on_job_logged)
        worker.succeeded.connect(self._on_succeeded)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self._job.done.connect(self._on_job_done)
        self._job_image = image
        self.run_panel.show_starting(f"Segmenting {image.name}…")
        LOG.info("segment %s with %s", image.source, run)
        self._job.start()
        self._save_settings()
        self._update_actions()

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.run_panel.summary.setText("Cancelling…")

    def is_running(self) -> bool:
        return self._job is not None

    def _on_progress(self, report: Progress) -> None:
        self.run_panel.show_progress(report)

    def _on_job_logged(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    def _on_succeeded(self, outcome: JobOutcome) -> None:
        image = self._job_image
        for old in [layer for layer in self.layers()
                    if layer.kind != "image" and layer.source == image.source]:
            self.remove_layer(old)
        prob, fields = result_layers(outcome, image)
        self._add_layer(prob, PROBABILITY_OPACITY)
        self._add_layer(fields)
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

    def _on_job_done(self) -> None:
        self._job.deleteLater()
        self._job = None
        self.run_panel.reset_progress()
        self._update_actions()
        self.jobEnded.emit()
        if self._close_when_idle:
            self.close()

    def _update_actions(self) -> None:
        kinds = {layer.kind for layer in self.layers()}
        self.actionSegment.setEnabled(self._job is None and "image" in kinds)
        self.actionCancel.setEnabled(self._job is not None)
        self.actionExport.setEnabled("fields" in kinds)
        self.actionZoomLayer.setEnabled(bool(kinds))
        self.actionEvaluate.setEnabled(can_evaluate(self.layers()))

    # ----------------------------------------------------------------- export, dialogs

    def export(self) -> None:
        """Save the current (else the newest) field layer through a save dialog."""
        current = self.layer_panel.current()
        candidates = [layer for layer in self.layers() if layer.kind == "fields"]
        if current in candidates:
            candidates.insert(0, current)
        if not candidates:
            return
        layer = candidates[0]
        suggestion = Path(self.prefs.last_folder) / f"{layer.source.stem}_fields.gpkg"
        target = export_target(self, suggestion)
        if target is None:
            return
        self.statusBar().showMessage(f"Exporting {len(layer.fields)} fields to {target}…")
        run_in_background(lambda: write_fields(layer.fields, target),
                          lambda path: self._on_exported(path, len(layer.fields)),
                          lambda error: show_error(self, f"Export failed: {error[0]}",
                                                   error[1]))

    def _on_exported(self, path: Path, count: int) -> None:
        self.prefs.last_folder = str(path.parent)
        LOG.info("exported %d fields to %s", count, path)
        self.statusBar().showMessage(f"Exported {count} fields to {path}", 10000)

    def fine_tune(self) -> None:
        """Open the fine-tune dialog: labels may be drawn over an open image (current first);
        a model it saves joins the model list (and, when complete, becomes current)."""
        current = self._current_image()
        images = [layer.source for layer in self.layers() if layer.kind == "image"]
        images.sort(key=lambda source: current is None or source != current.source)
        dialog = FineTuneDialog(self, images, self.run_panel.settings().model)
        dialog.modelSaved.connect(
            lambda path, complete: self.run_panel.reload_models(path if complete else None))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def evaluate(self) -> None:
        """Open the dialog that scores a field layer against a reference vector layer."""
        dialog = EvaluateDialog(self, self.layers(), self._current_image(), self.work_dir,
                                Path(self.prefs.last_folder))
        dialog.evaluated.connect(self._show_matches)
        dialog.reportSaved.connect(self._on_report_saved)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def _show_matches(self, scored: Scored) -> None:
        """Put an evaluation's match map on the map, in place of an older one of the pair."""
        for old in [layer for layer in self.layers()
                    if layer.kind == "matches" and layer.name == scored.title]:
            self.remove_layer(old)
        self._add_layer(picture_layer(scored.title, scored.matches, scored.evaluation.grid,
                                      scored.pred, self.view.y_sign), MATCHES_OPACITY)
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
        if self._job is not None:
            if self._close_when_idle or ask(self, "Quit farmseg",
                                            "A segmentation is running. Cancel it and quit?"):
                self._close_when_idle = True
                self._job.cancel()
            event.ignore()
            return
        self._save_settings()
        for layer in self.layers():
            self.remove_layer(layer)
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        super().closeEvent(event)
