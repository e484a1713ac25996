"""Block pieces -> one field layer: fields linked across block edges, scenes on other grids
joined by an ownership rule, one coverage.

Within a group (one grid), pieces are in the group's pixel coordinates: seeds linked across
block edges make one field, edges along block edges get each other's vertices, and the
pieces of a field are unioned, exactly like the row bands of fields.vectorize. Between
groups (other CRS or pixel grid) a field is kept from the group whose footprint holds its
centroid deepest (farthest from the footprint's edge); where kept fields of different
groups still overlap, the one held less deep gives way, so the layer stays a coverage.
"""

from __future__ import annotations

import numpy as np
import shapely
from pyproj import CRS
from rasterio.transform import Affine

from farmseg.batch.jobdir import JobFolder
from farmseg.batch.mosaic import SceneGroup
from farmseg.batch.plan import Block
from farmseg.fields.vectorize import RawFields, components, vertices_across_seams
from farmseg.geoio.raster import PROB_SCALE, Grid
from farmseg.geoio.vectors import reproject


def merge_group(job: JobFolder, group: SceneGroup, blocks: list[Block], min_px: int
                ) -> RawFields:
    """The fields of one group's blocks, in the group's CRS."""
    loaded = [job.load_pieces(b.name) for b in blocks]
    geoms = np.concatenate([np.empty(0, object)] + [g for g, _ in loaded])
    arrays = {key: np.concatenate([a[key] for _, a in loaded], axis=-1)
              for key in ("ids", "counted", "pixels", "field_sum", "links")}
    keys = np.unique(np.concatenate([arrays["ids"], arrays["counted"],
                                     arrays["links"].ravel()]))
    field = components(len(keys), np.searchsorted(keys, arrays["links"]))
    counted = field[np.searchsorted(keys, arrays["counted"])]
    total = np.bincount(counted, weights=arrays["pixels"], minlength=len(keys))
    fsum = np.bincount(counted, weights=arrays["field_sum"], minlength=len(keys))
    owner = field[np.searchsorted(keys, arrays["ids"])]
    big = total[owner] >= min_px
    geoms, owner = _along_block_edges(geoms[big], blocks), owner[big]
    geoms, owner = _union_by_owner(geoms, owner)
    keep = shapely.area(geoms) >= max(1, min_px)
    geoms, owner = geoms[keep], owner[keep]
    t = group.grid.transform
    geoms = pixels_to_map(geoms, t)
    return RawFields(geoms, fsum[owner] / total[owner] / PROB_SCALE, group.grid)


def pixels_to_map(geoms: np.ndarray, t: Affine) -> np.ndarray:
    return shapely.transform(geoms, lambda xy: np.column_stack(
        (t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f)))


def _along_block_edges(geoms: np.ndarray, blocks: list[Block]) -> np.ndarray:
    """Vertices shared along block edges (rows, then columns by swapping the axes):
    blocks are polygonized apart, so an edge two fields share along a block edge has only
    the vertices of one side in each."""
    rows = np.unique([float(b.core.row_off) for b in blocks if b.core.row_off > 0])
    cols = np.unique([float(b.core.col_off) for b in blocks if b.core.col_off > 0])
    if len(geoms) == 0:
        return geoms
    if len(rows):
        geoms = vertices_across_seams(geoms, rows)
    if len(cols):
        geoms = shapely.transform(vertices_across_seams(shapely.transform(geoms, _swap), cols),
                                  _swap)
    return geoms


def _swap(xy: np.ndarray) -> np.ndarray:
    return xy[:, ::-1].copy()


def _union_by_owner(geoms: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pieces of each field unioned (only fields of several pieces), parts apart."""
    values, counts = np.unique(owner, return_counts=True)
    several = np.isin(owner, values[counts > 1])
    if not several.any():
        return geoms, owner
    index = np.flatnonzero(several)
    index = index[np.argsort(owner[index], kind="stable")]
    groups = np.split(index, np.flatnonzero(np.diff(owner[index])) + 1)
    merged = [shapely.get_parts(shapely.union_all(geoms[g])) for g in groups]
    return (np.concatenate([geoms[~several], *merged]),
            np.concatenate([owner[~several], *(np.full(len(m), owner[g[0]])
                                               for m, g in zip(merged, groups))]))


def footprint(group: SceneGroup, crs: CRS | None) -> shapely.Geometry:
    """The union of a group's scene rectangles, in `crs` (edges densified before
    reprojection)."""
    boxes = []
    for w in group.windows:
        box = shapely.box(w.col_off, w.row_off, w.col_off + w.width, w.row_off + w.height)
        boxes.append(shapely.segmentize(box, max(1.0, max(w.width, w.height) / 64)))
    area = pixels_to_map(np.array([shapely.union_all(boxes)]), group.grid.transform)
    return reproject(area, group.grid.crs, crs)[0]


def join_groups(parts: list[RawFields], footprints: list[shapely.Geometry], crs: CRS | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Fields of all groups in `crs` (geometries, confidence), each area taken once."""
    geoms = [reproject(p.geoms, p.grid.crs, crs) for p in parts]
    if len(parts) == 1:
        return geoms[0], parts[0].confidence
    group = np.concatenate([np.full(len(g), i) for i, g in enumerate(geoms)])
    all_geoms = np.concatenate(geoms)
    confidence = np.concatenate([p.confidence for p in parts])
    centroid = shapely.centroid(all_geoms)
    depth = np.stack([np.where(shapely.contains(f, centroid),
                               shapely.distance(centroid, shapely.boundary(f)), -np.inf)
                      for f in footprints])
    home = np.argmax(depth, axis=0)
    keep = np.flatnonzero(home == group)
    geoms_kept = _give_way(all_geoms[keep], group[keep], depth[home[keep], keep])
    valid = ~shapely.is_empty(geoms_kept)
    return geoms_kept[valid], confidence[keep][valid]


def _give_way(geoms: np.ndarray, group: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Remove from each field the overlapping fields of other groups held deeper."""
    out = geoms.copy()
    a, b = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    losing = (group[a] != group[b]) & ((depth[a] < depth[b]) | ((depth[a] == depth[b]) & (a > b)))
    for index in np.unique(a[losing]):
        winners = b[losing & (a == index)]
        out[index] = shapely.difference(geoms[index], shapely.union_all(geoms[winners]))
    return out


def pixel_size_in(grid: Grid, crs: CRS | None) -> float:
    """The length of a grid pixel in `crs` units, at the grid's centre."""
    if crs is None or grid.crs is None or CRS.from_user_input(crs) == grid.crs:
        return grid.pixel_size[0]
    t = grid.transform
    x, y = t * (grid.width / 2, grid.height / 2)
    step = np.array([shapely.LineString([(x, y), (x + t.a, y)])], dtype=object)
    return float(shapely.length(reproject(step, grid.crs, crs))[0])
