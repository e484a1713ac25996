"""The main window: map, layers, run panel, menus and the segmentation workflow."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QResizeEvent
from PySide6.QtWidgets import QDockWidget, QMainWindow, QStyle, QVBoxLayout, QWidget

from farmseg import __version__
from farmseg.gui.devices import gpu_name
from farmseg.gui.dialogs import ask, show_about
from farmseg.gui.edit_actions import EditActions
from farmseg.gui.evaluation import EvaluateDialog, Scored, can_evaluate
from farmseg.gui.field_editor import Corrections, FieldEditor
from farmseg.gui.field_export import export_fields
from farmseg.gui.field_files import FieldFiles
from farmseg.gui.finetune import open_fine_tune
from farmseg.gui.finetune_corrections import MyCorrections
from farmseg.gui.layer_panel import LayerPanel
from farmseg.gui.layers import Layer, picture_layer
from farmseg.gui.logs import setup_logging
from farmseg.gui.map_layers import MapLayers
from farmseg.gui.map_view import MapView
from farmseg.gui.menus import RecentMenu, add_menu, make_action
from farmseg.gui.opening import Opener
from farmseg.gui.panels import FieldInfo, RunPanel
from farmseg.gui.review_panel import ReviewPanel
from farmseg.gui.segmenting import Segmenter
from farmseg.gui.settings import Prefs, restore_window, save_window
from farmseg.gui.status import MapStatus
from farmseg.gui.tasks import run_in_background
from farmseg.gui.training_export import export_training_data
from farmseg.models.bundle import app_root

LOG = logging.getLogger("farmseg.gui")
ICON = app_root() / "resources" / "farmseg.svg"
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
        self.editor = FieldEditor(self.view, self.map_layers, self.statusBar(), self)
        self.files = FieldFiles(self, self.editor, self.map_layers, self.prefs, self.statusBar(),
                                self.open_raster)
        self.opener = Opener(self, self.view, self.map_layers, self.prefs, self.statusBar(),
                             lambda: self.files.confirm_unsaved("Open another image"))
        self.runner = Segmenter(self, self.view, self.map_layers, self.run_panel, self.prefs,
                                self.work_dir, self.files.confirm_unsaved, self.files.open_fields)
        self.review = ReviewPanel(self.editor, self.view)
        self.edit_actions = EditActions(self, self.view, self.map_layers, self.editor,
                                        self.review, {
            "open_fields": self.files.open_dialog, "save": self.files.save_current,
            "export_training": lambda: export_training_data(
                self, self.editor.corrections(), self.prefs, self.statusBar()),
            "segment_folder": self.runner.segment_folder})
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
                ("Segment", "segmentDock", side, Qt.DockWidgetArea.RightDockWidgetArea),
                ("Review", "reviewDock", self.review, Qt.DockWidgetArea.LeftDockWidgetArea)):
            dock = QDockWidget(title, self)
            dock.setObjectName(name)
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            docks.append(dock)
        self.resizeDocks(docks, [220, 300, 220], Qt.Orientation.Horizontal)
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolBar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.actionOpen, self.actionSegment, self.actionCancel,
                       self.actionExport, self.actionZoomLayer):
            toolbar.addAction(action)
        tools = self.addToolBar("Edit")
        tools.setObjectName("editToolBar")
        for action in (*self.edit_actions.tools.actions(), self.edit_actions.undo,
                       self.edit_actions.redo):
            tools.addAction(action)
        self._toolbars = (toolbar, tools)

    def _fit_toolbars(self) -> None:
        """The edit tools go on a row of their own when both toolbars do not fit in one (the
        tools hidden behind the overflow arrow were easy to miss)."""
        main, tools = self._toolbars
        needed = main.sizeHint().width() + tools.sizeHint().width() + 16
        wrapped = self.toolBarBreak(tools)
        if self.width() < needed and not wrapped:
            self.insertToolBarBreak(tools)
        elif self.width() >= needed and wrapped:
            self.removeToolBarBreak(tools)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_toolbars()

    def _create_menus(self) -> None:
        bar = self.menuBar()
        add_menu(bar, "&File", [self.actionOpen, self.actionAddVector,
                                RecentMenu(self.prefs, self.open_file, self), None,
                                *self.edit_actions.file, self.actionExport, None,
                                self.actionQuit])
        self.edit_actions.menus(bar)
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
        self.runner.job.started.connect(self._update_actions)
        self.runner.ended.connect(self._on_job_ended)

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

    # ----------------------------------------------------------------- segmentation, edits

    def segment(self) -> None:
        """Run the current model on the current image with the panel's settings."""
        self.runner.segment()

    def cancel(self) -> None:
        self.runner.cancel()

    def is_running(self) -> bool:
        return self.runner.job.is_running()

    def _on_job_ended(self) -> None:
        self._update_actions()
        self.jobEnded.emit()
        if self._close_when_idle:
            self.close()

    def select_fields(self, ids: list[int]) -> None:
        """Select fields of the current field layer by field_id."""
        self.editor.select(ids)

    def field_ids(self) -> list[int]:
        """The field_ids of the current field layer."""
        return self.editor.field_ids()

    def open_fields(self, path: str | Path) -> None:
        """Add saved fields as an editable layer of the current image (in the background)."""
        self.files.open_fields(Path(path))

    def corrections(self) -> Corrections | None:
        """The current field layer, its reviewed areas and its image (for fine-tuning)."""
        return self.editor.corrections()

    def offer_recovery(self) -> None:
        """After a crash: offer to restore the unsaved edits it left."""
        self.files.offer_recovery()

    def _update_actions(self) -> None:
        kinds = {layer.kind for layer in self.layers()}
        running = self.is_running()
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
        """Open the fine-tune dialog (on the open images, or the current corrections)."""
        open_fine_tune(self, self.map_layers, self.run_panel,
                       MyCorrections(self.editor, self.runner, self.view.y_sign))

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
        if self.is_running():
            if self._close_when_idle or ask(self, "Quit farmseg",
                                            "A segmentation is running. Cancel it and quit?"):
                self._close_when_idle = True
                self.runner.cancel()
            event.ignore()
            return
        if not self._close_when_idle and not self.files.confirm_unsaved("Quit farmseg"):
            event.ignore()
            return
        self.files.close(keep_unsaved=self._close_when_idle)
        save_window(self.prefs, self, self.run_panel)
        for layer in self.layers():
            self.remove_layer(layer)
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        super().closeEvent(event)
