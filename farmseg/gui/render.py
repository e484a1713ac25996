"""Raster values -> RGBA display pixels: band choice, contrast stretch, nodata alpha (Qt-free)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.enums import ColorInterp, Resampling
from rasterio.io import DatasetReader
from rasterio.windows import Window

from farmseg.models.scaling import percentile_scaling

DISPLAY_CAP = 2048  # longest side, in pixels, of the image that stands for a whole raster
QUICK_PIXELS = 4096 * 4096  # larger rasters without overviews take seconds to decimate
PROBABILITY_TINT = (255, 64, 200)  # field probability overlay colour; opacity follows the value


@dataclass(frozen=True)
class Style:
    """How raster values become display pixels."""

    bands: tuple[int, ...]  # 1-based: three for RGB, one for grey or a tinted overlay
    low: tuple[float, ...]
    high: tuple[float, ...]
    tint: tuple[int, int, int] | None = None  # one band in this colour, its value as opacity


PROBABILITY_STYLE = Style(bands=(2,), low=(0.0,), high=(255.0,), tint=PROBABILITY_TINT)


def display_bands(ds: DatasetReader) -> tuple[int, ...]:
    """Red, green, blue by colour interpretation; else bands 1-3; grey for 1-2 band rasters."""
    interp = list(ds.colorinterp)
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in interp for c in wanted):
        return tuple(interp.index(c) + 1 for c in wanted)
    return (1, 2, 3) if ds.count >= 3 else (1,)


def shape_within(width: int, height: int, cap: int = DISPLAY_CAP) -> tuple[int, int]:
    """(rows, cols) of an image at most `cap` px on its long side, with the raster's aspect."""
    scale = min(1.0, cap / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def full_window(ds: DatasetReader) -> Window:
    return Window(0, 0, ds.width, ds.height)


def read_window(ds: DatasetReader, bands: tuple[int, ...], window: Window,
                shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(bands, rows, cols) values and validity of `window` decimated to `shape` (overviews
    are used when the raster has them)."""
    out_shape = (len(bands), *shape)
    data = ds.read(list(bands), window=window, out_shape=out_shape,
                   resampling=Resampling.nearest)
    valid = ds.read_masks(list(bands), window=window, out_shape=out_shape,
                          resampling=Resampling.nearest).min(axis=0) > 0
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data).all(axis=0)
    return data, valid


def image_style(data: np.ndarray, valid: np.ndarray, bands: tuple[int, ...]) -> Style:
    """8-bit rasters as they are; anything else stretched between its 2nd and 98th percentiles."""
    if data.dtype == np.uint8:
        return Style(bands, (0.0,) * len(bands), (255.0,) * len(bands))
    stretch = percentile_scaling(data.reshape(len(bands), -1).astype(np.float64),
                                 valid.reshape(-1))
    return Style(bands, tuple(stretch["low"]), tuple(stretch["high"]))


def render(data: np.ndarray, valid: np.ndarray, style: Style) -> np.ndarray:
    """(rows, cols, 4) uint8 RGBA; invalid (nodata) pixels fully transparent."""
    low = np.asarray(style.low, dtype=np.float32)[:, None, None]
    high = np.asarray(style.high, dtype=np.float32)[:, None, None]
    scaled = (data.astype(np.float32) - low) * (255.0 / np.maximum(high - low, 1e-12))
    np.nan_to_num(scaled, copy=False)
    values = np.clip(scaled, 0, 255).astype(np.uint8)
    rgba = np.empty((*values.shape[1:], 4), dtype=np.uint8)
    alpha = np.where(valid, np.uint8(255), np.uint8(0))
    if style.tint is not None:
        rgba[..., :3] = style.tint
        rgba[..., 3] = np.minimum(values[0], alpha)
    else:
        rgba[..., :3] = values.transpose(1, 2, 0) if len(values) == 3 else values[0][..., None]
        rgba[..., 3] = alpha
    return rgba


def read_rgba(ds: DatasetReader, style: Style, window: Window,
              shape: tuple[int, int]) -> np.ndarray:
    """RGBA pixels of `window` at `shape` (rows, cols) in `style`."""
    return render(*read_window(ds, style.bands, window, shape), style)


def overview_is_quick(ds: DatasetReader) -> bool:
    """Whether the whole-raster image reads in well under a second (small, or has overviews)."""
    return ds.width * ds.height <= QUICK_PIXELS or bool(ds.overviews(1))


def overview_rgba(ds: DatasetReader, style: Style | None = None) -> tuple[Style, np.ndarray]:
    """The whole raster as RGBA at most DISPLAY_CAP px long; the style is derived when not given."""
    shape = shape_within(ds.width, ds.height)
    if style is not None:
        return style, read_rgba(ds, style, full_window(ds), shape)
    bands = display_bands(ds)
    data, valid = read_window(ds, bands, full_window(ds), shape)
    style = image_style(data, valid, bands)
    return style, render(data, valid, style)
