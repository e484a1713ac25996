"""The layers on the map: the scene's items, the layer panel's entries and the selected
fields' attributes, kept in step."""

from __future__ import annotations

import shutil

from PySide6.QtCore import QObject, Signal

from farmseg.editing.layer import EditableLayer
from farmseg.gui.layer_panel import LayerPanel
from farmseg.gui.layers import Layer
from farmseg.gui.map_view import MapView
from farmseg.gui.panels import FieldInfo


class MapLayers(QObject):
    """Adds and removes layers on `view` and `panel`; `field_info` shows selected fields.
    `changed` follows every addition and removal, `currentChanged` the panel's choice."""

    changed = Signal()
    currentChanged = Signal()

    def __init__(self, view: MapView, panel: LayerPanel, field_info: FieldInfo,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._view, self._panel, self._field_info = view, panel, field_info
        panel.removeRequested.connect(self.remove)
        panel.currentChanged.connect(lambda _layer: self.currentChanged.emit())

    def all(self) -> list[Layer]:
        """Top to bottom."""
        return self._panel.layers()

    def y_sign(self) -> float:
        """The view's scene y = y_sign * map y."""
        return self._view.y_sign

    def of_kind(self, kind: str) -> list[Layer]:
        return [layer for layer in self.all() if layer.kind == kind]

    def current_image(self) -> Layer | None:
        """The image of the current layer, else the top image."""
        images = self.of_kind("image")
        current = self._panel.current()
        if current is not None:
            images.sort(key=lambda layer: layer.source != current.source)
        return images[0] if images else None

    def current_or_top(self, kind: str) -> Layer | None:
        """The current layer if it is of `kind`, else the top one of that kind."""
        current = self._panel.current()
        if current is not None and current.kind == kind:
            return current
        return next(iter(self.of_kind(kind)), None)

    def add(self, layer: Layer, opacity: float = 1.0) -> None:
        """Put `layer` on top of the map and make it current."""
        self._view.scene().addItem(layer.item)
        self._panel.add(layer, opacity)
        self._update_extent()
        self.changed.emit()

    def remove(self, layer: Layer) -> None:
        """Take a layer off the map; delete its temporary files once nothing uses them."""
        self._panel.remove(layer)
        self._view.scene().removeItem(layer.item)
        if layer.kind == "fields":
            self._field_info.show_fields(None, [])
        if layer.job_dir is not None and all(other.job_dir != layer.job_dir
                                             for other in self.all()):
            shutil.rmtree(layer.job_dir, ignore_errors=True)
        self._update_extent()
        self.changed.emit()

    def zoom_to_current(self) -> None:
        """Show the whole current layer (else the top one)."""
        layer = self._panel.current() or next(iter(self.all()), None)
        if layer is not None:
            self._view.zoom_to(layer.item.sceneBoundingRect())

    def _update_extent(self) -> None:
        layers = self.all()
        if layers:
            extent = layers[0].item.sceneBoundingRect()
            for layer in layers[1:]:
                extent = extent.united(layer.item.sceneBoundingRect())
            self._view.set_extent(extent, min(layer.pixel_size for layer in layers))

    def refresh(self, layer: Layer) -> None:
        """Show the layer's title again (its field count changed)."""
        self._panel.refresh(layer)

    def show_fields(self, layer: EditableLayer, ids: list[int]) -> None:
        """The attributes of the fields `ids` of `layer` (none: dashes)."""
        self._field_info.show_fields(layer, ids)
