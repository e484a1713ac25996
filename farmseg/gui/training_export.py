"""File > Export corrections as training data: a training folder from the corrected fields
of an image (images/NAME.tif cropped to the reviewed areas' extent, fields/NAME.gpkg,
reviewed/NAME.gpkg), written off the GUI thread. The writing is Qt-free."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
import shapely
from pyproj import CRS
from PySide6.QtWidgets import QFileDialog, QStatusBar, QWidget
from rasterio.windows import Window, from_bounds

from farmseg.editing.layer import EditableLayer, to_field_layer
from farmseg.editing.store import REVIEWED_LAYER
from farmseg.errors import UsageError
from farmseg.fields.export import write_fields
from farmseg.geoio.atomic import atomic_file
from farmseg.geoio.vectors import reproject
from farmseg.gui.dialogs import show_error
from farmseg.gui.field_editor import Corrections
from farmseg.gui.settings import Prefs
from farmseg.gui.tasks import run_in_background

LOG = logging.getLogger("farmseg.gui")


def _crop(image: Path, bounds: tuple[float, float, float, float], target: Path) -> None:
    """The pixels of `image` inside `bounds` (its CRS), whole pixels, to a GeoTIFF."""
    with rasterio.open(image) as src:
        window = from_bounds(*bounds, transform=src.transform)
        col, row = math.floor(window.col_off), math.floor(window.row_off)
        window = Window(col, row, math.ceil(window.col_off + window.width) - col,
                        math.ceil(window.row_off + window.height) - row)
        window = window.intersection(Window(0, 0, src.width, src.height))
        profile = src.profile
        profile.update(driver="GTiff", width=window.width, height=window.height,
                       transform=src.window_transform(window), compress="deflate", tiled=False)
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        with atomic_file(target) as tmp, rasterio.open(tmp, "w", **profile) as out:
            out.write(src.read(window=window))


def _write_areas(areas: shapely.Geometry, crs: str | None, target: Path) -> None:
    """The reviewed areas as a GeoPackage of one layer, `reviewed`."""
    parts = shapely.get_parts(areas)
    with atomic_file(target) as tmp:
        pyogrio.raw.write(tmp, geometry=shapely.to_wkb(parts), field_data=[], fields=[],
                          crs=crs, driver="GPKG", geometry_type="Polygon", layer=REVIEWED_LAYER)


def write_training_folder(layer: EditableLayer, image: Path, folder: Path,
                          name: str | None = None) -> Path:
    """images/NAME.tif, fields/NAME.gpkg and reviewed/NAME.gpkg in `folder` (NAME: the
    image's stem): the fields and reviewed areas in the image's CRS, the image cropped to
    the reviewed areas' extent. Returns the image written."""
    if layer.reviewed.is_empty:
        raise UsageError(None, "nothing is marked as reviewed yet: mark the areas you checked "
                         "(Mark view as reviewed)")
    name = name or image.stem
    with rasterio.open(image) as src:
        crs = src.crs.to_wkt() if src.crs else None
    source = layer.crs.to_wkt() if layer.crs is not None else None
    areas = reproject(np.asarray([layer.reviewed]), source, crs)[0]
    near = layer.tree.query(layer.reviewed, predicate="intersects")
    fields = layer.rows(layer.ids[np.sort(near)])
    for sub in ("images", "fields", "reviewed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    picture = folder / "images" / f"{name}.tif"
    _crop(image, shapely.bounds(areas).tolist(), picture)
    plain = to_field_layer(fields)
    write_fields(replace(plain, geoms=reproject(plain.geoms, source, crs),
                         crs=CRS.from_user_input(crs) if crs else plain.crs),
                 folder / "fields" / f"{name}.gpkg")
    _write_areas(areas, crs, folder / "reviewed" / f"{name}.gpkg")
    return picture


def export_training_data(parent: QWidget, corrections: Corrections | None, prefs: Prefs,
                         status: QStatusBar) -> None:
    """Ask for a training folder and write the corrections there in the background."""
    if corrections is None:
        status.showMessage("No fields to export: segment an image first.", 8000)
        return
    name = QFileDialog.getExistingDirectory(parent, "Export corrections as training data",
                                            prefs.last_folder)
    if not name:
        return
    folder = Path(name)

    def done(picture: Path) -> None:
        prefs.last_folder = str(folder)
        LOG.info("training data written to %s", folder)
        status.showMessage(f"Training data written to {folder} ({picture.name})", 10000)

    run_in_background(lambda: write_training_folder(corrections.layer, corrections.image, folder),
                      done, lambda error: show_error(parent, f"Export failed: {error[0]}",
                                                     error[1]))
