"""`farmseg info`: what a raster holds and whether a model fits it."""

from __future__ import annotations

from pathlib import Path

from farmseg.errors import FarmsegError
from farmseg.geoio.raster import RasterSource
from farmseg.models.bundle import load_bundle
from farmseg.pipeline.inference import model_bands, model_scale, resampling_note


def describe_raster(path: Path, model: str = "default") -> str:
    """Multi-line description: size, bands, dtype, CRS, pixel size, nodata, model fit."""
    with RasterSource(path) as src:
        ds = src.dataset
        grid = src.grid
        crs = grid.crs.to_string() if grid.crs else "none (areas would be in pixels)"
        px = grid.pixel_size
        metres = grid.pixel_size_m()
        band_labels = [d or str(c.name).lower() for d, c in zip(src.descriptions, ds.colorinterp)]
        lines = [
            f"file:       {path}",
            f"driver:     {ds.driver}",
            f"size:       {src.width} x {src.height} px, {src.count} band(s)",
            f"dtypes:     {', '.join(sorted(set(ds.dtypes)))}",
            f"bands:      {', '.join(band_labels)}",
            f"crs:        {crs}",
            f"pixel size: {px[0]:.6g} x {px[1]:.6g}"
            + (f" (~{metres:.2f} m)" if metres else ""),
            f"nodata:     {src.nodata if src.nodata is not None else 'none'}",
            f"overviews:  {ds.overviews(1) or 'none'}",
        ]
        try:
            bundle = load_bundle(model, metres)
            model_bands(src, bundle, None)
            note = resampling_note(src, bundle, model_scale(src, bundle))
            verdict = "fits" if note is None else "fits; " + note.split(": ", 1)[1]
            if src.dtype != bundle.dtype:
                verdict += f" ({src.dtype} input will be percentile-stretched)"
            lines.append(f"model:      '{bundle.name}' {verdict}")
        except FarmsegError as exc:
            lines.append(f"model:      '{model}' does not fit: {exc.problem}")
    return "\n".join(lines)
