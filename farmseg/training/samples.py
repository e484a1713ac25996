"""Labeled training images: find them, check them, load them into memory.

Training tiles are small (a few thousand pixels a side at most), so each is read whole.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.windows import Window

from farmseg.errors import InputError
from farmseg.geoio.raster import (
    RasterSource,
    close_pixel_sizes,
    resampled_shape,
    resize_image,
    resize_nearest,
)
from farmseg.training.corrections import find_reviewed, load_correction_labels, reviewed_window
from farmseg.training.labels import (
    boundary_from_instances,
    instances_from_polygons,
    mask_from_binary,
)

RASTER_SUFFIXES = (".tif", ".tiff")
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp")
MIN_CROP = 32  # the networks downsample 5 times


@dataclass
class Sample:
    """One labeled image in memory: raw bands, 3-class mask, valid-pixel mask and, where
    the labels tell fields apart (polygons, or an instances/ raster beside masks/), the
    field instances that validation scores against."""

    name: str
    image: np.ndarray  # (bands, h, w) raw values
    mask: np.ndarray  # (h, w) uint8 0/1/2
    valid: np.ndarray  # (h, w) bool
    dtype: str
    pixel_size: float  # metres (CRS units without a CRS)
    files: list[str] = field(default_factory=list)
    transform: Affine = field(default_factory=Affine.identity)
    crs: CRS | None = None
    instances: np.ndarray | None = None  # (h, w) 0 = no field, k = field k

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape


def find_labeled_pairs(data_dir: Path) -> list[tuple[Path, Path]]:
    """(image, label) pairs from DIR/images with DIR/masks (same stem) or DIR/fields."""
    data_dir = Path(data_dir)
    images_dir = data_dir / "images"
    if not images_dir.is_dir():
        raise InputError(data_dir, "no images/ folder (expected images/*.tif with masks/*.tif "
                         "or fields/*.geojson of the same names)")
    pairs = []
    for image in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in RASTER_SUFFIXES):
        label = _label_for(data_dir, image.stem)
        if label is None:
            raise InputError(image, "has no label: expected masks/<same name>.tif or "
                             "fields/<same name>.geojson|.gpkg|.shp")
        pairs.append((image, label))
    if not pairs:
        raise InputError(images_dir, "holds no .tif images")
    return pairs


def _label_for(data_dir: Path, stem: str) -> Path | None:
    for suffix in RASTER_SUFFIXES:
        candidate = data_dir / "masks" / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    for suffix in VECTOR_SUFFIXES:
        candidate = data_dir / "fields" / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def images_pixel_size(data_dir: Path) -> float | None:
    """The pixel size (m) of the first labelled image in `data_dir` (None without a CRS):
    what `default` as a base model is chosen for (load_bundle)."""
    image, _ = find_labeled_pairs(data_dir)[0]
    with RasterSource(image) as src:
        return src.grid.pixel_size_m()


def load_sample(image_path: Path, label_path: Path, bands: list[int] | None = None,
                band_names: list[str] | None = None) -> Sample:
    """Read one image and its label, checking grids, classes and values. Bands are read as
    `segment` reads them: those whose descriptions name `band_names` (e.g. "red
    (B04)"), else `bands`, else all; offsets the file declares are added."""
    with RasterSource(image_path) as src:
        use = ((band_names and src.named_bands(band_names)) or bands
               or list(range(1, src.count + 1)))
        if max(use) > src.count:
            raise InputError(image_path, f"has {src.count} bands, the model reads bands {use}")
        image, valid = src.read(Window(0, 0, src.width, src.height), use)
        grid, dtype, nodata = src.grid, src.dtype, src.nodata
    transform, crs, shape = grid.transform, grid.crs, (grid.height, grid.width)
    pixel = grid.pixel_size_m() or abs(transform.a) or 1.0
    nan_nodata = nodata is not None and np.isnan(nodata)
    if np.issubdtype(image.dtype, np.floating) and not nan_nodata and not np.isfinite(image).all():
        raise InputError(image_path, "holds NaN pixels without NaN declared as nodata; fill "
                         "them or set nodata=nan")
    if min(shape) < MIN_CROP:
        raise InputError(image_path, f"is {shape[1]} x {shape[0]} px, smaller than the "
                         f"{MIN_CROP} px minimum crop")
    reviewed = (None if label_path.suffix.lower() in RASTER_SUFFIXES
                else find_reviewed(label_path.parent.parent, label_path.stem))
    if label_path.suffix.lower() in RASTER_SUFFIXES:
        mask = _read_mask(label_path, shape, transform, crs)
        instances = _read_instances(label_path.parent.parent / "instances" / label_path.name,
                                    shape, transform, crs)
    elif reviewed is not None:  # corrections: labelled only inside the reviewed areas
        mask, inside, instances = load_correction_labels(label_path, reviewed, shape,
                                                         transform, crs)
        if not (valid & inside).any():
            raise InputError(reviewed[0], f"reviewed areas cover no pixel of {image_path.name}")
        valid &= inside
    else:
        instances = instances_from_polygons(label_path, shape, transform, crs)
        mask = boundary_from_instances(instances)
    if not np.any(mask[valid] > 0):
        raise InputError(label_path, "labels no field pixel (empty mask)")
    if not valid.any():
        raise InputError(image_path, "holds only nodata")
    sample = Sample(image_path.stem, image, mask, valid, dtype, pixel,
                    [str(image_path), str(label_path)], transform, crs, instances)
    if reviewed is None:
        return sample
    # a reviewed sample keeps the reviewed areas' extent: crops and blocks come from there
    return replace(sub_sample(sample, reviewed_window(valid, MIN_CROP), ""), name=sample.name)


def _read_instances(path: Path, shape, transform, crs) -> np.ndarray | None:
    """An instance raster on the image's grid, if there is one (else None)."""
    if not path.is_file():
        return None
    return _read_on_grid(path, shape, transform, crs, "instance raster")


def _read_on_grid(path: Path, shape, transform, crs, what: str) -> np.ndarray:
    """Band 1 of a label raster that must lie on its image's grid."""
    try:
        with rasterio.open(path) as src:
            if (src.height, src.width) != shape:
                raise InputError(path, f"{what} is {src.width}x{src.height} px, its image is "
                                 f"{shape[1]}x{shape[0]}")
            if src.crs != crs or not src.transform.almost_equals(transform):
                raise InputError(path, f"{what} grid (CRS or geotransform) differs from its "
                                 "image")
            return src.read(1)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(path, f"cannot read {what} ({exc})") from None


def _read_mask(path: Path, shape, transform, crs) -> np.ndarray:
    mask = _read_on_grid(path, shape, transform, crs, "mask")
    values = np.unique(mask)
    if values.min() < 0 or values.max() > 2:
        raise InputError(path, f"mask classes must be 0 (background), 1 (field), 2 (boundary); "
                         f"found {values.tolist()[:8]}")
    if values.max() <= 1:
        return mask_from_binary(mask)
    return mask.astype(np.uint8)


def resampled(sample: Sample, pixel_size: float) -> Sample:
    """The sample on a grid of `pixel_size` metres (unchanged when within 10 % of it): image
    averaged over each new pixel (or interpolated when enlarging), labels and validity
    by nearest neighbour, the boundary band rebuilt from the instances when known."""
    if close_pixel_sizes(pixel_size, sample.pixel_size):
        return sample
    factor = pixel_size / sample.pixel_size
    h, w = sample.shape
    nh, nw = resampled_shape(h, w, factor, MIN_CROP)
    image = resize_image(sample.image, nh, nw)
    instances = (None if sample.instances is None
                 else resize_nearest(sample.instances, nh, nw))
    mask = (resize_nearest(sample.mask, nh, nw) if instances is None
            else boundary_from_instances(instances))
    return Sample(sample.name, image, mask,
                  resize_nearest(sample.valid, nh, nw),
                  sample.dtype, pixel_size, sample.files,
                  sample.transform * Affine.scale(w / nw, h / nh), sample.crs, instances)


def split_validation(samples: list[Sample], fraction: float, seed: int
                     ) -> tuple[list[Sample], list[Sample]]:
    """Whole images for validation when there are >= 5, else a strip of each image."""
    if fraction <= 0:
        return samples, []
    if len(samples) >= 5:
        order = list(range(len(samples)))
        random.Random(seed).shuffle(order)
        n_val = max(1, round(len(samples) * fraction))
        val_ids = set(order[:n_val])
        return ([s for i, s in enumerate(samples) if i not in val_ids],
                [s for i, s in enumerate(samples) if i in val_ids])
    train: list[Sample] = []
    val: list[Sample] = []
    for sample in samples:
        h, w = sample.shape
        if w >= h:  # strip off the east side
            cut = w - max(1, int(math.ceil(w * fraction)))
            train.append(sub_sample(sample, np.s_[:, :cut], "train"))
            val.append(sub_sample(sample, np.s_[:, cut:], "val"))
        else:  # strip off the south side
            cut = h - max(1, int(math.ceil(h * fraction)))
            train.append(sub_sample(sample, np.s_[:cut, :], "train"))
            val.append(sub_sample(sample, np.s_[cut:, :], "val"))
    return train, val


def split_by_names(samples: list[Sample], names: list[str]
                   ) -> tuple[list[Sample], list[Sample]] | None:
    """(training, validation) with the whole images named `names` held out; None when a
    name is not one of the samples (or names a strip, as small data sets validate on)."""
    wanted = set(names)
    if not wanted or not wanted <= {s.name for s in samples}:
        return None
    return ([s for s in samples if s.name not in wanted],
            [s for s in samples if s.name in wanted])


def sub_sample(sample: Sample, window: tuple[slice, slice], tag: str) -> Sample:
    """The part of `sample` in `window` (rows, cols with non-negative starts), named
    `name[tag]`, on its own grid."""
    rows, cols = window
    transform = sample.transform * Affine.translation(cols.start or 0, rows.start or 0)
    return Sample(f"{sample.name}[{tag}]", sample.image[:, rows, cols], sample.mask[window],
                  sample.valid[window], sample.dtype, sample.pixel_size, sample.files,
                  transform, sample.crs,
                  None if sample.instances is None else sample.instances[window])
