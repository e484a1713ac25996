"""The status bar's map fields: cursor coordinates in the layer CRS, CRS, pixel size, zoom."""

from __future__ import annotations

from pyproj import CRS
from PySide6.QtWidgets import QLabel, QStatusBar

from farmseg.gui.widgets import named


def crs_label(crs: CRS | None) -> str:
    if crs is None:
        return "no CRS (pixel units)"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg} · {crs.name}" if epsg else crs.name


def unit_label(crs: CRS | None) -> str:
    if crs is None:
        return "px"
    if crs.is_geographic:
        return "°"
    name = crs.axis_info[0].unit_name if crs.axis_info else ""
    return {"metre": "m", "foot": "ft", "US survey foot": "ftUS"}.get(name, name)


def coordinate_text(x: float, y: float, crs: CRS | None) -> str:
    if crs is not None and crs.is_geographic:
        return f"lon {x:.6f}  lat {y:.6f}"
    return f"x {x:,.1f}  y {y:,.1f} {unit_label(crs)}"


class MapStatus:
    """Permanent status bar fields: cursor coordinates, CRS, pixel size, zoom."""

    def __init__(self, bar: QStatusBar) -> None:
        self._labels = {}
        for name in ("coords", "crs", "pixel", "zoom"):
            self._labels[name] = named(QLabel(), f"status_{name}")
            bar.addPermanentWidget(self._labels[name])
        self._labels["coords"].setMinimumWidth(230)
        self.crs: CRS | None = None

    def set_layer(self, crs: CRS | None, pixel_size: float | None) -> None:
        """The current layer's CRS and pixel size; pixel_size None clears (no layer)."""
        self.crs = crs
        known = pixel_size is not None
        self._labels["crs"].setText(crs_label(crs) if known else "")
        self._labels["pixel"].setText(f"pixel {pixel_size:.3g} {unit_label(crs)}" if known else "")

    def set_cursor(self, x: float, y: float) -> None:
        self._labels["coords"].setText(coordinate_text(x, y, self.crs))

    def set_zoom(self, screen_px_per_pixel: float) -> None:
        self._labels["zoom"].setText(f"zoom {screen_px_per_pixel * 100:.0f} %")
