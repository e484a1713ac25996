"""Open rasters safely and read them by windows (never whole)."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from farmseg.errors import InputError
from farmseg.geoio.atomic import atomic_file

NON_GEOTIFF_DRIVERS = {"PNG": "a PNG image", "JPEG": "a JPEG image", "GIF": "a GIF image",
                       "BMP": "a BMP image", "WEBP": "a WebP image"}


@dataclass(frozen=True)
class Grid:
    """A raster grid: size, geotransform and CRS in one object."""

    width: int
    height: int
    transform: rasterio.Affine
    crs: CRS | None

    @property
    def pixel_size(self) -> tuple[float, float]:
        return (math.hypot(self.transform.a, self.transform.d),
                math.hypot(self.transform.b, self.transform.e))

    @property
    def is_geographic(self) -> bool:
        return bool(self.crs is not None and self.crs.is_geographic)

    def pixel_size_m(self) -> float | None:
        """Approximate ground pixel size in metres (None without a CRS)."""
        if self.crs is None:
            return None
        size = self.pixel_size[0]
        if self.crs.is_geographic:
            lat = (self.transform @ (self.width / 2, self.height / 2))[1]
            return size * 111_320.0 * max(0.01, math.cos(math.radians(lat)))
        return size * (self.crs.linear_units_factor[1] if self.crs.linear_units_factor else 1.0)

    def window_transform(self, window: Window) -> rasterio.Affine:
        return rasterio.windows.transform(window, self.transform)


def close_pixel_sizes(a: float, b: float) -> bool:
    """Pixel sizes within 10 % of each other: used as they are, never resampled."""
    return abs(a / b - 1.0) <= 0.1


class RasterSource:
    """An open raster, read by windows; pixel validity from nodata, masks, alpha and NaN."""

    def __init__(self, path: str | Path, crs: str | None = None) -> None:
        """Open `path`; `crs` assigns a CRS to a raster that lacks one (or overrides it)."""
        self.path = Path(path)
        self.dataset = open_dataset(self.path)
        ds = self.dataset
        self.grid = Grid(ds.width, ds.height, ds.transform, parse_crs(crs) if crs else ds.crs)
        self.count = ds.count
        self.dtype = ds.dtypes[0]
        self.nodata = ds.nodata
        self.has_georeference = not ds.transform.is_identity or ds.crs is not None
        self.descriptions = [d or "" for d in ds.descriptions]
        self.offsets = declared_offsets(ds, self.descriptions)

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.dataset.close()

    @property
    def width(self) -> int:
        return self.grid.width

    @property
    def height(self) -> int:
        return self.grid.height

    def read(self, window: Window, bands: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(bands, h, w) values (declared offsets added) and (h, w) validity for a window
        inside the raster."""
        try:
            data = self.dataset.read(bands, window=window)
            valid = self.dataset.read_masks(bands, window=window).min(axis=0) > 0
        except RasterioIOError as exc:
            raise InputError(self.path, f"cannot read pixels, the file may be truncated or "
                             f"corrupt ({_first_line(exc)})") from None
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data).all(axis=0)
        return self._offset(data, bands), valid

    def _offset(self, data: np.ndarray, bands: list[int]) -> np.ndarray:
        """Add the offsets the file declares (e.g. Sentinel-2 L2A's BOA_ADD_OFFSET), kept
        in the raster's dtype (integers clipped to its range)."""
        add = np.asarray([self.offsets[b - 1] for b in bands], np.float64)
        if not add.any():
            return data
        shifted = data + add.astype(np.float32 if data.dtype.kind == "f" else np.int64
                                    )[:, None, None]
        if data.dtype.kind in "iu":
            info = np.iinfo(data.dtype)
            np.clip(shifted, info.min, info.max, out=shifted)
        return shifted.astype(data.dtype)

    def named_bands(self, names: list[str]) -> list[int] | None:
        """1-based bands whose descriptions (or colour interpretations) name `names`
        (e.g. "red (B04)", "B4", "Red"), in that order; None unless each name is found
        in exactly one band."""
        found = []
        for labels in (self.descriptions, [c.name for c in self.dataset.colorinterp]):
            named = [band_name(label) for label in labels]
            matches = [[i + 1 for i, n in enumerate(named) if n == name] for name in names]
            if all(len(m) == 1 for m in matches):
                found.append([m[0] for m in matches])
        return found[0] if found else None

    def sample_windows(self, count: int = 16, size: int = 256) -> list[Window]:
        """Up to `count` windows spread over the raster, for statistics."""
        side = int(math.ceil(math.sqrt(count)))
        windows = []
        w, h = min(size, self.width), min(size, self.height)
        for iy in range(side):
            for ix in range(side):
                x = int((self.width - w) * (ix + 0.5) / side)
                y = int((self.height - h) * (iy + 0.5) / side)
                windows.append(Window(x, y, w, h))
        return windows[:count]


# Sentinel-2 (and Landsat 8/9) band codes of the colours models read
BAND_CODES = {"b2": "blue", "b02": "blue", "b3": "green", "b03": "green", "b4": "red",
              "b04": "red", "b8": "nir", "b08": "nir"}
BAND_WORDS = {"red", "green", "blue", "nir"}


def band_name(label: str) -> str | None:
    """The colour a band description names ("red (B04)" -> red, "B4" -> red, "Red edge 1
    (B05)" -> None): a band code decides where there is one, else a colour word."""
    words = re.findall(r"[a-z0-9]+", label.lower())
    codes = [w for w in words if re.fullmatch(r"b\d+a?", w)]
    if codes:
        return BAND_CODES.get(codes[0])
    colours = BAND_WORDS.intersection(words)
    if len(colours) != 1 or "edge" in words:
        return None
    return colours.pop()


def declared_offsets(ds: rasterio.io.DatasetReader, descriptions: list[str]) -> list[float]:
    """Per band, the value the file's metadata says to add to its pixel values: GDAL's band
    offset (in pixel-value units, i.e. divided by the band's scale), else a BOA_ADD_OFFSET
    tag of the band, or of the dataset for that band (..._B04 / ..._B4) or for all bands.
    0.0 where nothing is declared (e.g. Sentinel-2 L2A before processing baseline 04.00)."""
    dataset_tags = ds.tags()
    offsets = []
    for index, description in enumerate(descriptions):
        offset, scale = ds.offsets[index], ds.scales[index]
        if offset and scale:
            offsets.append(offset / scale)
            continue
        tags = {**dataset_tags, **ds.tags(index + 1)}
        codes = re.findall(r"b\d+a?", description.lower())
        keys = [f"BOA_ADD_OFFSET_B{n.upper()}" for c in codes for n in (c[1:], c[1:].lstrip("0"))]
        value = next((tags[k] for k in [*keys, "BOA_ADD_OFFSET"] if k in tags), None)
        offsets.append(_number(value))
    return offsets


def _number(text: str | None) -> float:
    try:
        return float(text) if text is not None else 0.0
    except ValueError:
        return 0.0


def parse_crs(text: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except Exception:
        raise InputError(None, f"--crs {text}: not a CRS (use e.g. EPSG:32615)") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_dataset(path: Path) -> rasterio.io.DatasetReader:
    """Open a raster or raise InputError with a one-line reason."""
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, not a raster file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(path, f"cannot access file ({exc.strerror})") from None
    if size == 0:
        raise InputError(path, "is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(path)
    except RasterioIOError as exc:
        message = _first_line(exc)
        if "TIFF" in message or "tiff" in message.lower():
            raise InputError(path, f"is not a valid GeoTIFF, it may be truncated or corrupt "
                             f"({message})") from None
        raise InputError(path, "is not a raster GDAL can read") from None
    except Exception as exc:  # GDAL may raise other errors on garbage
        raise InputError(path, f"is not a readable raster ({_first_line(exc)})") from None
    if dataset.driver in NON_GEOTIFF_DRIVERS and path.suffix.lower() in (".tif", ".tiff"):
        kind = NON_GEOTIFF_DRIVERS[dataset.driver]
        dataset.close()
        raise InputError(path, f"is {kind} renamed .tif, not a GeoTIFF (no georeferencing); "
                         "export it as GeoTIFF from your GIS")
    if dataset.count == 0 or dataset.width == 0 or dataset.height == 0:
        dataset.close()
        raise InputError(path, "holds no raster bands")
    return dataset


def resize_bands(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(bands, h, w) resized to (bands, height, width) float32: averaged over each new pixel
    when shrinking, interpolated (bilinear) when enlarging. Inference and training resample
    imagery to a model's pixel size with this one function."""
    shrinking = height * width < image.shape[1] * image.shape[2]
    smooth = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.stack([cv2.resize(band, (width, height), interpolation=smooth)
                     for band in image.astype(np.float32)])


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(bands, h, w) imagery resized as resize_bands does, kept in its own dtype (integer
    values rounded): a stored copy of the raster at another pixel size."""
    resized = resize_bands(image, height, width)
    if np.issubdtype(image.dtype, np.integer):
        resized = np.rint(resized)
    return resized.astype(image.dtype)


def resampled_shape(height: int, width: int, factor: float, minimum: int = 32
                    ) -> tuple[int, int]:
    """The size of a (height, width) grid whose pixels are `factor` times larger, at least
    `minimum` px a side (the networks downsample 5 times)."""
    return max(minimum, round(height / factor)), max(minimum, round(width / factor))


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """(..., h, w) labels or masks resized to (..., height, width) by nearest neighbour (the
    pixel holding each new pixel's centre); labels are never mixed."""
    h, w = array.shape[-2:]
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
    return array[..., rows[:, None], cols[None, :]]


# probability rasters store each class's probability as uint8: p * PROB_SCALE
PROB_SCALE = 255.0


def raster_profile_for(grid: Grid, count: int, dtype: str, nodata: float | None = None) -> dict:
    """A tiled, compressed GeoTIFF profile on `grid`."""
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": count,
               "dtype": dtype, "transform": grid.transform, "crs": grid.crs,
               "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    if grid.width >= 256 and grid.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if nodata is not None:
        profile["nodata"] = nodata
    return profile


def write_window(source: Path, window: Window, target: Path) -> Path:
    """The pixels of `source` in `window` as the GeoTIFF `target` (atomically; deflate),
    with their georeferencing, nodata, band descriptions and internal mask."""
    with rasterio.open(source) as src:
        profile = src.profile
        profile.update(driver="GTiff", width=window.width, height=window.height,
                       transform=src.window_transform(window), compress="deflate", tiled=False)
        for key in ("blockxsize", "blockysize"):
            profile.pop(key, None)
        with atomic_file(target) as tmp, rasterio.open(tmp, "w", **profile) as out:
            out.write(src.read(window=window))
            out.descriptions = src.descriptions
            if src.mask_flag_enums[0] == [MaskFlags.per_dataset]:  # an internal mask
                out.write_mask(src.dataset_mask(window=window))
    return target
