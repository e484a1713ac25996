"""Find the scenes of a batch: files, folders (recursively) and GDAL VRTs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from farmseg.errors import FarmsegError, InputError
from farmseg.geoio.raster import Grid, RasterSource

RASTER_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Scene:
    """One input raster: where it is and its grid."""

    path: Path
    grid: Grid
    count: int
    dtype: str
    nodata: float | None


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given, folders replaced by their GeoTIFFs (recursively, sorted)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES
                           and p.is_file())
            if not found:
                raise InputError(item, "folder holds no GeoTIFF (*.tif)")
            paths.extend(found)
        else:
            paths.append(item)
    return list(dict.fromkeys(p.resolve() for p in paths))


def open_scene(path: Path, crs: str | None = None) -> Scene:
    """Read a scene's header and a few sample windows (a truncated file fails here)."""
    with RasterSource(path, crs) as source:
        if not source.has_georeference:
            raise InputError(path, "has no georeferencing; a batch needs placed scenes")
        bands = list(range(1, source.count + 1))
        for window in source.sample_windows(4, 64):
            source.read(window, bands)
        return Scene(source.path, source.grid, source.count, source.dtype, source.nodata)


def find_scenes(inputs: list[Path], crs: str | None = None, skip_bad: bool = False
                ) -> tuple[list[Scene], list[FarmsegError]]:
    """The readable scenes and, with `skip_bad`, the errors of those skipped (else the first
    error is raised, naming its file)."""
    scenes, skipped = [], []
    for path in expand_inputs(inputs):
        try:
            scenes.append(open_scene(path, crs))
        except FarmsegError as exc:
            if not skip_bad:
                raise
            skipped.append(exc)
    if not scenes:
        raise InputError(None, "no readable scene among the inputs")
    return scenes, skipped
