"""The layer panel: visibility checkboxes, opacity, drawing order, removal."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from farmseg.gui.layers import Layer


def _layer_of(entry: QTreeWidgetItem) -> Layer:
    """The layer a tree entry stands for."""
    layer = entry.data(0, Qt.ItemDataRole.UserRole)
    assert isinstance(layer, Layer)
    return layer


class LayerPanel(QWidget):
    """Top of the list is drawn on top; checkboxes show and hide, the slider sets opacity."""

    currentChanged = Signal(object)  # Layer or None
    removeRequested = Signal(object)  # Layer

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._tree = QTreeWidget()
        self._tree.setObjectName("layerTree")
        self._tree.setHeaderHidden(True)
        self._tree.setRootIsDecorated(False)
        self._tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # keep "(kind, count)"
        self._tree.itemChanged.connect(self._on_item_changed)
        self._tree.currentItemChanged.connect(self._on_current_changed)
        self._opacity = QSlider(Qt.Orientation.Horizontal)
        self._opacity.setObjectName("opacitySlider")
        self._opacity.setRange(0, 100)
        self._opacity.setEnabled(False)
        self._opacity.valueChanged.connect(self._on_opacity)
        self._remove = QPushButton("Remove")
        self._remove.setEnabled(False)
        self._remove.clicked.connect(lambda: self.removeRequested.emit(self.current()))
        row = QHBoxLayout()
        row.addWidget(QLabel("Opacity"))
        row.addWidget(self._opacity, 1)
        row.addWidget(self._remove)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self._tree, 1)
        layout.addLayout(row)

    def layers(self) -> list[Layer]:
        """Top to bottom."""
        return [_layer_of(self._entry(i)) for i in range(self._tree.topLevelItemCount())]

    def _entry(self, index: int) -> QTreeWidgetItem:
        entry = self._tree.topLevelItem(index)
        assert entry is not None, index
        return entry

    def _index(self, layer: Layer) -> int:
        return next(i for i, each in enumerate(self.layers()) if each is layer)

    def current(self) -> Layer | None:
        item = self._tree.currentItem()
        return _layer_of(item) if item is not None else None

    def set_current(self, layer: Layer) -> None:
        self._tree.setCurrentItem(self._entry(self._index(layer)))

    def add(self, layer: Layer, opacity: float = 1.0) -> None:
        """Put `layer` on top and make it current."""
        entry = QTreeWidgetItem([layer.title])
        entry.setData(0, Qt.ItemDataRole.UserRole, layer)
        entry.setFlags(entry.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        entry.setCheckState(0, Qt.CheckState.Checked)
        entry.setToolTip(0, str(layer.source))
        layer.item.setOpacity(opacity)
        self._tree.insertTopLevelItem(0, entry)
        self._restack()
        self._tree.setCurrentItem(entry)

    def refresh(self, layer: Layer) -> None:
        """Show the title of `layer` again."""
        self._entry(self._index(layer)).setText(0, layer.title)

    def remove(self, layer: Layer) -> None:
        self._tree.takeTopLevelItem(self._index(layer))
        self._restack()

    def _restack(self) -> None:
        layers = self.layers()
        for depth, layer in enumerate(layers):
            layer.item.setZValue(len(layers) - depth)

    def _on_item_changed(self, entry: QTreeWidgetItem) -> None:
        layer = _layer_of(entry)
        layer.item.setVisible(entry.checkState(0) == Qt.CheckState.Checked)

    def _on_current_changed(self, entry: QTreeWidgetItem | None) -> None:
        layer = _layer_of(entry) if entry is not None else None
        self._opacity.setEnabled(layer is not None)
        self._remove.setEnabled(layer is not None)
        if layer is not None:
            self._opacity.blockSignals(True)
            self._opacity.setValue(round(layer.item.opacity() * 100))
            self._opacity.blockSignals(False)
        self.currentChanged.emit(layer)

    def _on_opacity(self, value: int) -> None:
        layer = self.current()
        if layer is not None:
            layer.item.setOpacity(value / 100.0)
