"""Open rasters safely and read them by windows (never whole)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from farmseg.errors import InputError

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
        self.grid = Grid(ds.width, ds.height, ds.transform, _parse_crs(crs) if crs else ds.crs)
        self.count = ds.count
        self.dtype = ds.dtypes[0]
        self.nodata = ds.nodata
        self.has_georeference = not ds.transform.is_identity or ds.crs is not None

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

    def read(self, window: Window, bands: list[int], out_shape: tuple[int, int] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """(bands, h, w) values and (h, w) validity for a window inside the raster;
        with `out_shape` (h, w), resampled to it (area average when shrinking, bilinear when
        enlarging; validity by nearest neighbour)."""
        shape = None if out_shape is None else (len(bands), *out_shape)
        values_resampling = Resampling.nearest
        if out_shape is not None:
            shrinking = out_shape[0] * out_shape[1] < window.width * window.height
            values_resampling = Resampling.average if shrinking else Resampling.bilinear
        try:
            data = self.dataset.read(bands, window=window, out_shape=shape,
                                     resampling=values_resampling)
            masks = self.dataset.read_masks(bands, window=window, out_shape=shape,
                                            resampling=Resampling.nearest)
            valid = masks.min(axis=0) > 0
        except RasterioIOError as exc:
            raise InputError(self.path, f"cannot read pixels, the file may be truncated or "
                             f"corrupt ({_first_line(exc)})") from None
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data).all(axis=0)
        return data, valid

    def valid(self, window: Window, bands: list[int]) -> np.ndarray:
        """(h, w) validity of a window at full resolution; no pixel read when the raster
        declares every pixel valid (no nodata, mask or alpha; not floating point)."""
        floating = np.issubdtype(np.dtype(self.dtype), np.floating)
        flags = self.dataset.mask_flag_enums
        if not floating and all(MaskFlags.all_valid in flags[b - 1] for b in bands):
            return np.ones((int(window.height), int(window.width)), bool)
        return self.read(window, bands)[1]

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


def _parse_crs(text: str) -> CRS:
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
