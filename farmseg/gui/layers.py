"""Map layers: what each shows and the graphics item that draws it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import rasterio
from pyproj import CRS
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QGraphicsItem

from farmseg.fields import FieldLayer
from farmseg.gui.convert import scene_transform, to_qimage
from farmseg.gui.items import FieldsItem, RasterItem
from farmseg.gui.render import PROBABILITY_STYLE, Style, overview_rgba
from farmseg.gui.worker import JobOutcome
from farmseg.raster import RasterSource

KIND_LABELS = {"image": "image", "probability": "field probability", "fields": "fields"}


@dataclass(eq=False)
class Layer:
    """One entry of the layer panel and the graphics item that draws it."""

    name: str
    kind: str  # "image", "probability" or "fields"
    item: QGraphicsItem
    source: Path  # the image the layer shows or was computed from
    crs: CRS | None
    pixel_size: float  # map units per pixel
    fields: FieldLayer | None = None
    job_dir: Path | None = None  # temporary files behind a result layer

    @property
    def title(self) -> str:
        count = f", {len(self.fields)}" if self.fields is not None else ""
        return f"{self.name} ({KIND_LABELS[self.kind]}{count})"


def image_layer(source: RasterSource, y_sign: float) -> Layer:
    """An image layer; its picture comes from load_preview."""
    item = RasterItem(source.path, source.width, source.height)
    item.setTransform(scene_transform(source.grid.transform, y_sign))
    crs = CRS.from_user_input(source.grid.crs.to_wkt()) if source.grid.crs else None
    return Layer(source.path.name, "image", item, source.path, crs, source.grid.pixel_size[0])


def load_preview(path: Path) -> tuple[Style, QImage]:
    """The display style and whole-raster image of an image layer (any thread)."""
    with rasterio.open(path) as ds:
        style, rgba = overview_rgba(ds)
    return style, to_qimage(rgba)


def result_layers(outcome: JobOutcome, image: Layer) -> tuple[Layer, Layer]:
    """The probability and field layers of a finished run on `image`."""
    width, height = outcome.prob_size
    prob_item = RasterItem(outcome.prob_path, width, height)
    prob_item.set_base(PROBABILITY_STYLE, outcome.prob_image)
    prob_item.setTransform(outcome.prob_transform)
    fields_item = FieldsItem(outcome.paths, outcome.bounds)
    common = {"name": image.name, "source": image.source, "crs": image.crs,
              "pixel_size": image.pixel_size, "job_dir": outcome.job_dir}
    return (Layer(kind="probability", item=prob_item, **common),
            Layer(kind="fields", item=fields_item, fields=outcome.result.layer, **common))
