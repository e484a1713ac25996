"""Map layers: what each shows and the graphics item that draws it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import rasterio
from pyproj import CRS
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainterPath, QPixmap, QTransform
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPixmapItem

from farmseg.editing.layer import from_field_layer
from farmseg.errors import FarmsegError, InputError
from farmseg.fields.clean import FieldLayer
from farmseg.geoio.raster import Grid, RasterSource
from farmseg.geoio.vectors import read_polygons, reproject
from farmseg.gui.convert import polygon_path, scene_bounds, scene_transform, to_qimage
from farmseg.gui.edit_session import EditSession
from farmseg.gui.items import POLYGON_COLOR, FieldsItem, RasterItem
from farmseg.gui.render import DISPLAY_CAP, PROBABILITY_STYLE, Style, overview_rgba
from farmseg.gui.tasks import describe
from farmseg.gui.worker import JobOutcome

KIND_LABELS = {"image": "image", "probability": "field probability", "fields": "fields",
               "vector": "polygons", "matches": "matches"}


@dataclass(eq=False)
class Layer:
    """One entry of the layer panel and the graphics item that draws it."""

    name: str
    kind: str  # "image", "probability", "fields", "vector" or "matches"
    item: QGraphicsItem
    source: Path  # the image (or vector file) the layer shows or was computed from
    crs: CRS | None
    pixel_size: float  # map units per pixel
    fields: FieldLayer | None = None
    job_dir: Path | None = None  # temporary files behind a result layer
    grid: Path | None = None  # a raster on the pixel grid the fields were computed on
    edits: EditSession | None = None  # the editing state of a "fields" layer

    @property
    def title(self) -> str:
        count = f", {self.item.count}" if isinstance(self.item, FieldsItem) else ""
        return f"{self.name} ({KIND_LABELS[self.kind]}{count})"

    @property
    def raster(self) -> RasterItem:
        """The item of an "image" or "probability" layer."""
        assert isinstance(self.item, RasterItem), self.kind
        return self.item

    @property
    def outlines(self) -> FieldsItem:
        """The item of a "fields" or "vector" layer."""
        assert isinstance(self.item, FieldsItem), self.kind
        return self.item


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
    prob = Layer(image.name, "probability", prob_item, image.source, image.crs,
                 image.pixel_size, job_dir=outcome.job_dir)
    fields = outcome.result.layer
    keys = [int(i) for i in fields.columns["field_id"]]
    session = EditSession(from_field_layer(fields), image.source,
                          probabilities=outcome.prob_path)
    return prob, replace(prob, kind="fields", item=FieldsItem(outcome.paths, outcome.bounds,
                                                              keys=keys),
                         fields=fields, grid=outcome.prob_path, edits=session)


@dataclass
class Outlines:
    """The polygons of a vector file, ready to draw."""

    paths: list[QPainterPath]  # scene coordinates
    bounds: QRectF
    crs: CRS | None


def _outlines(path: Path, map_crs: CRS | None, y_sign: float) -> Outlines:
    geoms, crs = read_polygons(path)
    if len(geoms) == 0:
        raise InputError(path, "no polygons in this file")
    geoms = reproject(geoms, crs, map_crs)
    shown = map_crs if map_crs is not None else CRS.from_user_input(crs) if crs else None
    return Outlines([polygon_path(g, y_sign) for g in geoms], scene_bounds(geoms, y_sign), shown)


def read_outlines(path: Path, map_crs: CRS | None, y_sign: float) -> Outlines:
    """Polygons of a vector file in the map's CRS (its own when the map has none); any
    thread. Every failure is an InputError naming the file."""
    try:
        return _outlines(path, map_crs, y_sign)
    except FarmsegError:
        raise
    except Exception as exc:  # a CRS pyproj cannot use, a geometry GEOS rejects, ...
        raise InputError(path, f"cannot display ({describe(exc)})") from exc


def vector_layer(path: Path, outlines: Outlines, like: Layer | None) -> Layer:
    """A layer of polygon outlines. Its pixel size, which bounds zooming, is that of layer
    `like` (the map's), else a fine fraction of its extent."""
    extent = max(outlines.bounds.width(), outlines.bounds.height())
    pixel = like.pixel_size if like is not None else extent / DISPLAY_CAP or 1.0
    item = FieldsItem(outlines.paths, outlines.bounds, POLYGON_COLOR)
    return Layer(path.name, "vector", item, path, outlines.crs, pixel)


def picture_layer(name: str, picture: QImage, grid: Grid, like: Layer, y_sign: float) -> Layer:
    """A "matches" layer: `picture` stretched over `grid`, in the CRS of layer `like`."""
    item = QGraphicsPixmapItem(QPixmap.fromImage(picture))
    scale = QTransform.fromScale(grid.width / picture.width(), grid.height / picture.height())
    item.setTransform(scale * scene_transform(grid.transform, y_sign))
    pixel = grid.pixel_size[0] * grid.width / picture.width()
    return Layer(name, "matches", item, like.source, like.crs, pixel)
