"""Opening files as layers: images (previews read in the background when a raster has no
overviews) and polygon files, from dialogs, the recent list or drops."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QFileDialog, QStatusBar, QWidget

from farmseg.errors import FarmsegError
from farmseg.geoio.raster import RasterSource
from farmseg.gui.detail import DetailLoader
from farmseg.gui.dialogs import POLYGON_FILTER, RASTER_FILTER, VECTOR_SUFFIXES, show_error
from farmseg.gui.layers import (
    Layer,
    Outlines,
    image_layer,
    load_preview,
    read_outlines,
    vector_layer,
)
from farmseg.gui.map_layers import MapLayers
from farmseg.gui.map_view import MapView
from farmseg.gui.render import Style, overview_is_quick
from farmseg.gui.settings import Prefs
from farmseg.gui.tasks import describe, run_in_background

LOG = logging.getLogger("farmseg.gui")


class Opener:
    """Opens files onto `layers` of `view`; errors go to message boxes over `parent`.
    `may_open()` is asked before an image opens (False: it does not)."""

    def __init__(self, parent: QWidget, view: MapView, layers: MapLayers, prefs: Prefs,
                 status: QStatusBar, may_open: Callable[[], bool] = lambda: True) -> None:
        self._parent, self._view, self._layers = parent, view, layers
        self._prefs, self._status, self._may_open = prefs, status, may_open
        self._detail = DetailLoader(view)

    def open_dialog(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self._parent, "Open images",
                                                self._prefs.last_folder, RASTER_FILTER)
        for name in names:
            self.open_raster(name)

    def add_vector_dialog(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self._parent, "Add vector layers",
                                                self._prefs.last_folder, POLYGON_FILTER)
        for name in names:
            self.add_vector(name)

    def open_file(self, path: str | Path) -> None:
        """Open a raster, or add a vector file (by its suffix)."""
        if Path(path).suffix.lower() in VECTOR_SUFFIXES:
            self.add_vector(path)
        else:
            self.open_raster(path)

    def open_raster(self, path: str | Path) -> Layer | None:
        """Open a raster as the top layer; on failure show why and return None."""
        path = Path(path)
        if not self._may_open():
            return None
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            with RasterSource(path) as source:
                if not self._layers.all():
                    self._view.y_sign = -1.0 if source.grid.transform.e < 0 else 1.0
                layer = image_layer(source, self._view.y_sign)
                quick = overview_is_quick(source.dataset)
                summary = (f"{source.width} × {source.height} px, {source.count} band(s) "
                           f"{source.dtype}")
            if quick:
                layer.raster.set_base(*load_preview(path))
        except FarmsegError as exc:
            show_error(self._parent, str(exc))
            return None
        except Exception as exc:  # GDAL can fail in many ways on damaged files
            show_error(self._parent, f"{path}: cannot display ({describe(exc)})",
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
                              lambda error: self._error(f"{path}: cannot display ({error[0]})",
                                                        error[1]))
        return layer

    def add_vector(self, path: str | Path) -> None:
        """Add the polygons of a vector file as an outline layer, in the map's CRS (read in
        the background); on failure show why."""
        path = Path(path)
        like = self._layers.current_image() or next(reversed(self._layers.all()), None)
        crs, sign = (like.crs if like else None), self._view.y_sign
        self._status.showMessage(f"Reading {path.name}…")
        run_in_background(lambda: read_outlines(path, crs, sign),
                          lambda outlines: self._on_outlines(path, outlines, like),
                          lambda error: self._error(*error))

    def _error(self, reason: str, details: str) -> None:
        show_error(self._parent, reason, details)

    def _on_outlines(self, path: Path, outlines: Outlines, like: Layer | None) -> None:
        layer = vector_layer(path, outlines, like)
        self._add_opened(layer, f"{layer.outlines.count} polygons")

    def _add_opened(self, layer: Layer, summary: str) -> None:
        """Add a layer read from a file; zoom to it if it is the first; remember the file."""
        first = not self._layers.all()
        self._layers.add(layer)
        if first:
            self._layers.zoom_to_current()
        self._prefs.add_recent(layer.source)
        self._prefs.last_folder = str(layer.source.parent)
        LOG.info("opened %s (%s)", layer.source, summary)
        self._status.showMessage(f"Opened {layer.source.name}: {summary}", 8000)

    def _on_preview(self, layer: Layer, preview: tuple[Style, QImage]) -> None:
        if layer in self._layers.all():
            layer.raster.set_base(*preview)
            self._detail.refresh()
