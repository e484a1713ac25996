"""Scenes on one pixel grid become one virtual raster (a GDAL VRT), read like one file.

Scenes share a grid when they have the same CRS, pixel size, bands and data type and their
origins lie on each other's pixel corners. Where such scenes overlap, the first listed owns
the pixels (its valid pixels are painted last), so every area is taken once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio.dtypes
from rasterio.transform import Affine
from rasterio.windows import Window

from farmseg.batch.scenes import Scene
from farmseg.geoio.raster import Grid

ALIGN_TOLERANCE_PX = 1e-3


@dataclass
class SceneGroup:
    """Scenes on one grid: the grid of their union and each scene's window in it."""

    scenes: list[Scene]
    grid: Grid
    windows: list[Window]


def _same_grid(a: Scene, b: Scene) -> bool:
    ta, tb = a.grid.transform, b.grid.transform
    if (a.grid.crs != b.grid.crs or (a.count, a.dtype, a.nodata) != (b.count, b.dtype, b.nodata)
            or ta.b or ta.d or tb.b or tb.d
            or not all(math.isclose(x, y, rel_tol=1e-9) for x, y in ((ta.a, tb.a), (ta.e, tb.e)))):
        return False
    col, row = ~ta * (tb.c, tb.f)
    return all(abs(v - round(v)) < ALIGN_TOLERANCE_PX for v in (col, row))


def group_scenes(scenes: list[Scene]) -> list[SceneGroup]:
    """Scenes sorted into grids, in the order of their first scene."""
    members: list[list[Scene]] = []
    for scene in scenes:
        home = next((m for m in members if _same_grid(m[0], scene)), None)
        if home is None:
            members.append([scene])
        else:
            home.append(scene)
    return [_group(m) for m in members]


def _group(scenes: list[Scene]) -> SceneGroup:
    base = scenes[0].grid.transform
    corners = []
    for scene in scenes:
        col, row = ~base * (scene.grid.transform.c, scene.grid.transform.f)
        corners.append((round(col), round(row), scene.grid.width, scene.grid.height))
    col0, row0 = min(c[0] for c in corners), min(c[1] for c in corners)
    width = max(c[0] + c[2] for c in corners) - col0
    height = max(c[1] + c[3] for c in corners) - row0
    transform = base * Affine.translation(col0, row0)
    windows = [Window(c - col0, r - row0, w, h) for c, r, w, h in corners]
    return SceneGroup(scenes, Grid(width, height, transform, scenes[0].grid.crs), windows)


def write_vrt(target: Path, grid: Grid, count: int, dtype: str, nodata: float | None,
              sources: list[tuple[Path, Window, Window]]) -> Path:
    """A VRT on `grid` painted from (file, source window, target window), later sources over
    earlier ones (nodata pixels of a source do not paint)."""
    gdal_type = rasterio.dtypes.typename_fwd[rasterio.dtypes.dtype_rev[dtype]]
    t = grid.transform
    lines = [f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">']
    if grid.crs is not None:
        lines.append(f"  <SRS>{escape(grid.crs.to_wkt())}</SRS>")
    lines.append(f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}"
                 "</GeoTransform>")
    for band in range(1, count + 1):
        lines.append(f'  <VRTRasterBand dataType="{gdal_type}" band="{band}">')
        if nodata is not None:
            lines.append(f"    <NoDataValue>{nodata!r}</NoDataValue>")
        for path, src, dst in sources:
            lines += ["    <ComplexSource>",
                      f'      <SourceFilename relativeToVRT="0">{escape(str(path))}'
                      "</SourceFilename>",
                      f"      <SourceBand>{band}</SourceBand>",
                      f'      <SrcRect xOff="{src.col_off}" yOff="{src.row_off}" '
                      f'xSize="{src.width}" ySize="{src.height}"/>',
                      f'      <DstRect xOff="{dst.col_off}" yOff="{dst.row_off}" '
                      f'xSize="{dst.width}" ySize="{dst.height}"/>']
            if nodata is not None:
                lines.append(f"      <NODATA>{nodata!r}</NODATA>")
            lines.append("    </ComplexSource>")
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(target)
    return target


def write_group_vrt(group: SceneGroup, target: Path) -> Path:
    """The group's mosaic; the first scene owns overlaps."""
    first = group.scenes[0]
    sources = [(s.path, Window(0, 0, s.grid.width, s.grid.height), w)
               for s, w in zip(group.scenes, group.windows)]
    return write_vrt(target, group.grid, first.count, first.dtype, first.nodata, sources[::-1])


def write_window_vrt(group: SceneGroup, mosaic: Path, window: Window, target: Path) -> Path:
    """A window of the group's mosaic as a raster of its own."""
    first = group.scenes[0]
    grid = Grid(int(window.width), int(window.height),
                rasterio.windows.transform(window, group.grid.transform), group.grid.crs)
    return write_vrt(target, grid, first.count, first.dtype, first.nodata,
                     [(mosaic, window, Window(0, 0, window.width, window.height))])
