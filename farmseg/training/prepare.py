"""Turn what a user has into a training folder (images/ + masks/ or fields/).

- loose files: images plus masks (same stem) or polygon files, picked in a dialog;
- a polygon file over part of an open image: the image is cropped to the polygons'
  extent, so training sees only the part the user labelled.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import rasterio
import shapely
from rasterio.windows import Window, from_bounds

from farmseg.errors import InputError
from farmseg.geoio.raster import write_window
from farmseg.geoio.vectors import read_polygons, reproject
from farmseg.training.samples import RASTER_SUFFIXES, VECTOR_SUFFIXES

MASK_HINTS = ("mask", "label", "labels", "gt")


def _is_mask_name(path: Path) -> bool:
    stem = path.stem.lower()
    return any(stem.endswith(f"_{hint}") or stem.endswith(f"-{hint}") for hint in MASK_HINTS)


def _image_stem(mask: Path) -> str:
    """`a--b_mask` -> `a--b`: strip only the mask suffix (names may hold - and _)."""
    stem = mask.stem
    for hint in MASK_HINTS:
        for sep in ("_", "-"):
            if stem.lower().endswith(f"{sep}{hint}"):
                return stem[: -len(hint) - 1]
    return stem


def folder_from_files(files: list[Path], target: Path) -> Path:
    """Lay out picked files as a training folder (links, not copies).

    Images are rasters; a raster named like `<image>_mask.tif` (or _label/_labels/_gt), or
    one found in a sibling masks/ folder, is its mask; `<image>.geojson|.gpkg|.shp` are its
    field polygons.
    """
    files = [Path(f) for f in files]
    rasters = [f for f in files if f.suffix.lower() in RASTER_SUFFIXES]
    vectors = {f.stem: f for f in files if f.suffix.lower() in VECTOR_SUFFIXES}
    masks = {_image_stem(f): f for f in rasters if _is_mask_name(f)}
    images = [f for f in rasters if not _is_mask_name(f)]
    if not images:
        raise InputError(files[0] if files else target, "no image among the chosen files")
    for sub in ("images", "masks", "fields"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    for image in images:
        mask = masks.get(image.stem) or _sibling_mask(image)
        _link(image, target / "images" / image.name)
        if mask is not None:
            _link(mask, target / "masks" / f"{image.stem}.tif")
        elif image.stem in vectors:
            vector = vectors[image.stem]
            _link(vector, target / "fields" / f"{image.stem}{vector.suffix}")
            if vector.suffix.lower() == ".shp":
                for part in vector.parent.glob(f"{vector.stem}.*"):
                    _link(part, target / "fields" / f"{image.stem}{part.suffix}")
        else:
            raise InputError(image, "has no label among the chosen files (a mask "
                             f"{image.stem}_mask.tif or polygons {image.stem}.geojson)")
    return target


def _sibling_mask(image: Path) -> Path | None:
    candidate = image.parent.parent / "masks" / image.name
    return candidate if candidate.is_file() else None


def _link(source: Path, link: Path) -> None:
    try:
        os.symlink(source.resolve(), link)
    except OSError:
        shutil.copyfile(source, link)


def folder_from_polygons_over_image(image: Path, polygons: Path, target: Path) -> Path:
    """Crop `image` to the extent of `polygons` (any CRS) and lay out a training folder."""
    geoms, crs = read_polygons(polygons)
    if len(geoms) == 0:
        raise InputError(polygons, "holds no field polygons")
    with rasterio.open(image) as src:
        geoms = reproject(geoms, crs, src.crs.to_wkt() if src.crs else None)
        left, bottom, right, top = shapely.total_bounds(geoms)
        window = from_bounds(left, bottom, right, top, src.transform)
        window = window.intersection(Window(0, 0, src.width, src.height))
        col0, row0 = int(math.floor(window.col_off)), int(math.floor(window.row_off))
        window = Window(col0, row0, int(math.ceil(window.col_off + window.width)) - col0,
                        int(math.ceil(window.row_off + window.height)) - row0)
        if window.width < 32 or window.height < 32:
            raise InputError(polygons, f"covers only {window.width} x {window.height} px of "
                             f"{image.name}; label at least 32 x 32 px")
    for sub in ("images", "fields"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    name = f"{image.stem}_labelled"
    write_window(image, window, target / "images" / f"{name}.tif")
    _link(polygons, target / "fields" / f"{name}{polygons.suffix}")
    if polygons.suffix.lower() == ".shp":
        for part in polygons.parent.glob(f"{polygons.stem}.*"):
            _link(part, target / "fields" / f"{name}{part.suffix}")
    return target


