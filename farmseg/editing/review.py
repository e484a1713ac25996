"""Review queue: the fields most worth a look first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from farmseg.editing.layer import EditableLayer


@dataclass(frozen=True)
class ReviewSettings:
    """What counts as doubtful: confidence under `low_confidence`; compactness (Polsby-
    Popper) under `low_compactness`; area over `size_factor` times the layer's median
    area or under it divided by `size_factor`."""

    low_confidence: float = 0.7
    low_compactness: float = 0.3
    size_factor: float = 5.0


@dataclass(frozen=True)
class ReviewItem:
    field_id: int
    reason: str


def review_queue(layer: EditableLayer, settings: ReviewSettings | None = None
                 ) -> list[ReviewItem]:
    """Fields not yet confirmed, in review order: low confidence (lowest first), then
    unusual shapes (most unusual first), then the rest (lowest confidence first). Fields
    without a confidence (drawn by hand) count as certain."""
    s = settings or ReviewSettings()
    todo = np.flatnonzero(layer.columns["status"] != "confirmed")
    confidence = np.nan_to_num(layer.columns["confidence"][todo].astype(float), nan=1.0)
    compact = layer.columns["compact"][todo].astype(float)
    area = layer.columns["area_ha"][todo].astype(float)
    median = float(np.median(layer.columns["area_ha"])) if len(layer) else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        odd = np.nan_to_num(np.stack([
            s.low_compactness / compact,
            area / (median * s.size_factor),
            median / (area * s.size_factor),
        ]), nan=0.0, posinf=np.inf)
    unusual = odd.max(axis=0)
    tier = np.where(confidence < s.low_confidence, 0, np.where(unusual > 1, 1, 2))
    order = np.lexsort((layer.ids[todo], np.where(tier == 1, -unusual, confidence), tier))
    return [ReviewItem(int(layer.ids[todo[i]]),
                       _reason(tier[i], confidence[i], compact[i], area[i], odd[:, i]))
            for i in order]


def _reason(tier: int, confidence: float, compact: float, area: float, odd: np.ndarray) -> str:
    """Why a field is in its place in the queue, in words."""
    if tier == 0:
        return f"low confidence {confidence:.2f}"
    if tier == 2:
        return f"confidence {confidence:.2f}"
    return [f"unusual shape (compactness {compact:.2f})", f"very large ({area:.2f} ha)",
            f"very small ({area:.2f} ha)"][int(np.argmax(odd))]
