"""Score predicted fields against reference fields (pixel IoU, field-level F1 and more).

Both layers are rasterized as instance rasters on one grid; a predicted field matches a
reference field when their IoU >= 0.5 (one-to-one); F1 = 2·matches / (pred + ref).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rasterio import features
from scipy import ndimage

from farmseg.errors import InputError, UsageError
from farmseg.geoio.raster import Grid, RasterSource
from farmseg.geoio.vectors import read_polygons, reproject

MATCH_IOU = 0.5


@dataclass
class Score:
    """Counts behind the metrics; scores of several images add up with `+`."""

    intersection: int = 0
    union: int = 0
    matches: int = 0
    predicted: int = 0
    reference: int = 0
    over_segmented: int = 0  # reference fields split into several predictions
    under_segmented: int = 0  # predictions covering several reference fields
    boundary_tp: int = 0
    boundary_pred: int = 0
    boundary_ref: int = 0
    per_field: list[dict] = field(default_factory=list)

    def __add__(self, other: Score) -> Score:
        merged = Score(**{k: getattr(self, k) + getattr(other, k)
                          for k in asdict(self) if k != "per_field"})
        merged.per_field = self.per_field + other.per_field
        return merged

    @property
    def pixel_iou(self) -> float:
        return self.intersection / self.union if self.union else 1.0

    @property
    def precision(self) -> float:
        return self.matches / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.matches / self.reference if self.reference else 1.0

    @property
    def f1(self) -> float:
        total = self.predicted + self.reference
        return 2 * self.matches / total if total else 1.0

    @property
    def boundary_f1(self) -> float:
        p = self.boundary_tp / self.boundary_pred if self.boundary_pred else 1.0
        r = self.boundary_tp / self.boundary_ref if self.boundary_ref else 1.0
        return 2 * p * r / (p + r) if p + r else 0.0

    def summary(self) -> dict[str, float]:
        return {"pixel_iou": round(self.pixel_iou, 4), "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "f1": round(self.f1, 4),
                "boundary_f1": round(self.boundary_f1, 4), "predicted": self.predicted,
                "reference": self.reference, "matches": self.matches,
                "over_segmented": self.over_segmented,
                "under_segmented": self.under_segmented}


def rasterize_instances(geoms: np.ndarray, grid: Grid) -> np.ndarray:
    """Instance raster (0 = no field, k = k-th geometry) on `grid`."""
    if len(geoms) == 0:
        return np.zeros((grid.height, grid.width), np.int32)
    return features.rasterize([(g, i + 1) for i, g in enumerate(geoms)],
                              out_shape=(grid.height, grid.width), transform=grid.transform,
                              fill=0, dtype="int32")


def _edges(instances: np.ndarray) -> np.ndarray:
    """Pixels where the instance id changes to a neighbour (field boundaries)."""
    edge = np.zeros(instances.shape, bool)
    edge[:, 1:] |= instances[:, 1:] != instances[:, :-1]
    edge[1:, :] |= instances[1:, :] != instances[:-1, :]
    return edge


def score_instances(pred: np.ndarray, ref: np.ndarray, valid: np.ndarray | None = None,
                    boundary_tolerance_px: int = 2) -> Score:
    """Compare two instance rasters of the same shape."""
    if valid is not None:
        pred = np.where(valid, pred, 0)
        ref = np.where(valid, ref, 0)
    score = Score()
    score.intersection = int(np.count_nonzero((pred > 0) & (ref > 0)))
    score.union = int(np.count_nonzero((pred > 0) | (ref > 0)))
    pred_ids, pred_area = np.unique(pred[pred > 0], return_counts=True)
    ref_ids, ref_area = np.unique(ref[ref > 0], return_counts=True)
    score.predicted, score.reference = len(pred_ids), len(ref_ids)
    both = (pred > 0) & (ref > 0)
    pairs, overlap = np.unique(np.stack([pred[both], ref[both]]), axis=1, return_counts=True)
    parea = dict(zip(pred_ids.tolist(), pred_area.tolist()))
    rarea = dict(zip(ref_ids.tolist(), ref_area.tolist()))
    matched_ref: dict[int, tuple[int, float]] = {}
    pieces_per_ref: dict[int, int] = {}
    refs_per_pred: dict[int, int] = {}
    for (p, r), inter in zip(pairs.T.tolist(), overlap.tolist()):
        iou = inter / (parea[p] + rarea[r] - inter)
        if iou >= MATCH_IOU and r not in matched_ref:
            matched_ref[r] = (p, iou)
        if inter >= 0.1 * parea[p]:  # a real piece of reference field r
            pieces_per_ref[r] = pieces_per_ref.get(r, 0) + 1
        if inter >= 0.1 * rarea[r]:
            refs_per_pred[p] = refs_per_pred.get(p, 0) + 1
    used_pred = {p for p, _ in matched_ref.values()}
    score.matches = len(used_pred)
    score.over_segmented = sum(1 for n in pieces_per_ref.values() if n > 1)
    score.under_segmented = sum(1 for n in refs_per_pred.values() if n > 1)
    for r in ref_ids.tolist():
        p, iou = matched_ref.get(r, (0, 0.0))
        score.per_field.append({"ref_id": r, "pred_id": p, "iou": round(iou, 3),
                                "ref_px": rarea[r]})
    size = 2 * boundary_tolerance_px + 1
    pred_edge, ref_edge = _edges(pred), _edges(ref)
    near_ref = ndimage.maximum_filter(ref_edge, size=size)
    near_pred = ndimage.maximum_filter(pred_edge, size=size)
    score.boundary_pred = int(pred_edge.sum())
    score.boundary_ref = int(ref_edge.sum())
    score.boundary_tp = int(min((pred_edge & near_ref).sum(), (ref_edge & near_pred).sum()))
    return score


def load_reference(path: Path, grid: Grid | None) -> tuple[np.ndarray, Grid]:
    """Reference fields as an instance raster: from polygons (on `grid`) or a raster."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        with RasterSource(path) as src:
            ref = src.dataset.read(1)
            ref_grid = src.grid
        if grid is not None and (grid.width, grid.height) != (ref_grid.width, ref_grid.height):
            raise InputError(path, "reference raster grid differs from the image grid")
        return ref.astype(np.int64), grid or ref_grid
    if grid is None:
        raise UsageError(path, "polygon references need --image (the grid to score on)")
    geoms, crs = read_polygons(path)
    geoms = reproject(geoms, crs, grid.crs.to_wkt() if grid.crs else None)
    return rasterize_instances(geoms, grid), grid


@dataclass
class Evaluation:
    score: Score
    grid: Grid
    pred: np.ndarray
    ref: np.ndarray


def evaluate_files(pred_path: Path, ref_path: Path, image: Path | None) -> Evaluation:
    """Score a predicted polygon file against a reference (polygons or instance raster)."""
    grid = None
    if image is not None:
        with RasterSource(image) as src:
            grid = src.grid
    ref, grid = load_reference(ref_path, grid)
    geoms, crs = read_polygons(pred_path)
    geoms = reproject(geoms, crs, grid.crs.to_wkt() if grid.crs else None)
    pred = rasterize_instances(geoms, grid)
    return Evaluation(score_instances(pred, ref), grid, pred, ref)


