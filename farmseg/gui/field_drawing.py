"""Field layers being edited, on the map: a layer for an edit session, and its drawing
(outlines coloured by status, the reviewed areas' hatch) kept in step with each change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtGui import QColor, QPainterPath

from farmseg.editing.layer import EditableLayer
from farmseg.gui.convert import polygon_path, scene_bounds
from farmseg.gui.edit_session import Change, EditSession
from farmseg.gui.items import FIELD_COLOR, STATUS_COLORS, FieldsItem
from farmseg.gui.layers import Layer
from farmseg.gui.overlays import ReviewedItem


def status_color(layer: EditableLayer, position: int) -> QColor:
    return STATUS_COLORS.get(str(layer.columns["status"][position]), FIELD_COLOR)


def shapes_of(layer: EditableLayer, ids: np.ndarray | list[int], y_sign: float
              ) -> list[tuple[int, QPainterPath, QColor]]:
    """(id, scene path, colour) of the fields `ids` of `layer` (any thread)."""
    at = layer.index_of(ids)
    return [(int(layer.ids[i]), polygon_path(layer.geoms[i], y_sign), status_color(layer, i))
            for i in at]


def session_layer(session: EditSession, name: str, pixel_size: float, y_sign: float,
                  source: Path | None = None) -> Layer:
    """A "fields" layer drawing `session` (`source`: the file it shows, default its image)."""
    layer = session.layer
    shapes = shapes_of(layer, layer.ids, y_sign)
    item = FieldsItem([path for _, path, _ in shapes], scene_bounds(layer.geoms, y_sign),
                      keys=[key for key, _, _ in shapes],
                      colors={key: color for key, _, color in shapes})
    return Layer(name, "fields", item, source or session.image, layer.crs, pixel_size,
                 fields=session.field_layer(), edits=session)


def sync_drawing(layer: Layer, change: Change, y_sign: float) -> None:
    """Redraw what `change` touched in `layer` (its session's current state)."""
    session = layer.edits
    assert session is not None, layer.kind
    current = session.layer
    removed = [shape.key for shape in layer.outlines.shapes] if change.everything \
        else list(change.removed)
    added = current.ids if change.everything else \
        [i for i in change.added if np.isin(i, current.ids)]
    layer.outlines.replace(removed, shapes_of(current, added, y_sign),
                           scene_bounds(current.geoms, y_sign))
    layer.outlines.select(session.selected)
    layer.fields = session.field_layer()
    draw_reviewed(layer, y_sign)


def draw_reviewed(layer: Layer, y_sign: float) -> None:
    """The hatch of the session's reviewed areas, a child of the layer's item."""
    session = layer.edits
    assert session is not None, layer.kind
    hatch = next((child for child in layer.item.childItems()
                  if isinstance(child, ReviewedItem)), None)
    if hatch is None:
        hatch = ReviewedItem()
        hatch.setParentItem(layer.item)
    hatch.setPath(polygon_path(session.layer.reviewed, y_sign))
