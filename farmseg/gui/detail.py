"""Sharper pixels when zoomed in: re-read the visible window of each raster off the GUI thread."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import rasterio
import shiboken6
from PySide6.QtCore import QObject, QRectF
from PySide6.QtGui import QImage
from rasterio.windows import Window

from farmseg.gui.convert import to_qimage
from farmseg.gui.items import RasterItem
from farmseg.gui.map_view import MapView
from farmseg.gui.render import Style, read_rgba
from farmseg.gui.tasks import run_in_background

LOG = logging.getLogger("farmseg.gui")
SHARPER_BY = 1.25  # ask for detail once the view needs 25 % more pixels than the base image


def read_detail(path: Path, style: Style, window: Window, shape: tuple[int, int]) -> QImage:
    """RGBA image of a raster window; opens its own handle, so any thread may call it."""
    with rasterio.open(path) as ds:
        return to_qimage(read_rgba(ds, style, window, shape))


class DetailLoader(QObject):
    """After each zoom or pan, asks for the visible window of zoomed-in rasters at screen size."""

    def __init__(self, view: MapView) -> None:
        super().__init__(view)
        self._view = view
        self._generation = 0
        view.viewChanged.connect(self.refresh)

    def refresh(self) -> None:
        self._generation += 1
        for item in self._view.scene().items():
            if isinstance(item, RasterItem) and item.ready and item.isVisible():
                self._request(item)

    def _request(self, item: RasterItem) -> None:
        transform = item.deviceTransform(self._view.viewportTransform())
        screen_px = math.hypot(transform.m11(), transform.m12())  # per raster pixel
        window = item.visible_window(self._view.visible_rect())
        if window is None or screen_px <= item.base_resolution * SHARPER_BY:
            item.clear_detail()
            return
        left, top, width, height = window
        scale = min(1.0, screen_px)
        shape = (max(1, round(height * scale)), max(1, round(width * scale)))
        rect = QRectF(left, top, width, height)
        generation, path, style = self._generation, item.path, item.style
        assert style is not None  # set with the base image, which `ready` items have

        def load() -> tuple[RasterItem, int, QRectF, QImage]:
            return item, generation, rect, read_detail(path, style, Window(*window), shape)

        run_in_background(load, self._deliver,
                          lambda error: LOG.warning("detail read failed: %s", error[0]))

    def _deliver(self, value: tuple[RasterItem, int, QRectF, QImage]) -> None:
        item, generation, rect, image = value
        if generation == self._generation and shiboken6.isValid(item):
            item.set_detail(rect, image)
