"""How sure is a field F1? A bootstrap over reference fields, paired for two predictions.

Field F1 = 2·matches / (predicted + reference) is a ratio of counts that belong to fields,
so its uncertainty comes from resampling fields. Each reference field is one unit, and each
predicted field is counted in the unit of the reference field it overlaps most (a match at
IoU >= 0.5 always overlaps its own reference field most); a predicted field on no reference
field is a unit of its own. Resampling units with replacement and recomputing F1 gives its
spread; resampling the same units for two predictions of the same area (a base model and a
fine-tuned one) gives the spread of their difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from farmseg.scoring.evaluate import MATCH_IOU

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.90  # two-sided level of the intervals


def field_units(pred: np.ndarray, ref: np.ndarray, valid: np.ndarray | None = None
                ) -> tuple[dict[int, np.ndarray], list[np.ndarray]]:
    """Counts (matches, predicted, reference) per reference field id, and one count row per
    predicted field that touches no reference field. Totals equal `score_instances`'."""
    if valid is not None:
        pred = np.where(valid, pred, 0)
        ref = np.where(valid, ref, 0)
    pred_ids, pred_area = np.unique(pred[pred > 0], return_counts=True)
    ref_ids, ref_area = np.unique(ref[ref > 0], return_counts=True)
    units = {int(r): np.array([0, 0, 1]) for r in ref_ids}
    both = (pred > 0) & (ref > 0)
    pairs, overlap = np.unique(np.stack([pred[both], ref[both]]), axis=1, return_counts=True)
    parea = dict(zip(pred_ids.tolist(), pred_area.tolist()))
    rarea = dict(zip(ref_ids.tolist(), ref_area.tolist()))
    home: dict[int, tuple[int, int]] = {}  # predicted id -> (largest overlap, its reference id)
    matched_ref: set[int] = set()
    used_pred: set[int] = set()
    for (p, r), inter in zip(pairs.T.tolist(), overlap.tolist()):
        if inter > home.get(p, (0, 0))[0]:
            home[p] = (inter, r)
        iou = inter / (parea[p] + rarea[r] - inter)
        if iou >= MATCH_IOU and r not in matched_ref:
            matched_ref.add(r)
            used_pred.add(p)
            units[r][0] += 1
    orphans = []
    for p in pred_ids.tolist():
        if p in home:
            units[home[p][1]][1] += 1
        else:
            orphans.append(np.array([0, 1, 0]))
    return units, orphans


def _f1(counts: np.ndarray) -> np.ndarray:
    """F1 of summed (matches, predicted, reference) along the last-but-one axis."""
    total = counts[..., 1] + counts[..., 2]
    return np.where(total > 0, 2 * counts[..., 0] / np.maximum(total, 1), 1.0)


@dataclass(frozen=True)
class PairedF1:
    """Field F1 of a base and a candidate prediction of one area, with intervals at the
    two-sided level `confidence`."""

    base: float
    candidate: float
    base_interval: tuple[float, float]
    candidate_interval: tuple[float, float]
    difference_interval: tuple[float, float]  # candidate - base
    reference_fields: int
    confidence: float = CONFIDENCE

    @property
    def difference(self) -> float:
        return self.candidate - self.base

    @property
    def candidate_is_better(self) -> bool:
        """Better beyond the uncertainty: the whole interval of the gain is above 0."""
        return self.difference_interval[0] > 0

    def describe(self) -> str:
        lo, hi = self.difference_interval
        return (f"field F1 {self.base:.3f} -> {self.candidate:.3f} ({self.difference:+.3f}, "
                f"{self.confidence:.0%} interval {lo:+.3f} .. {hi:+.3f}, bootstrap over "
                f"{self.reference_fields} reference fields)")


def paired_f1(base_pred: np.ndarray, candidate_pred: np.ndarray, ref: np.ndarray,
              valid: np.ndarray | None = None, samples: int = BOOTSTRAP_SAMPLES,
              seed: int = 0, confidence: float = CONFIDENCE) -> PairedF1:
    """Field F1 of two predictions against one reference, bootstrapped over the same units."""
    base_units, base_orphans = field_units(base_pred, ref, valid)
    cand_units, cand_orphans = field_units(candidate_pred, ref, valid)
    zero = np.zeros(3, np.int64)
    rows = [np.stack([base_units[r], cand_units[r]]) for r in base_units]
    rows += [np.stack([o, zero]) for o in base_orphans]
    rows += [np.stack([zero, o]) for o in cand_orphans]
    table = np.stack(rows) if rows else np.zeros((1, 2, 3), np.int64)  # (units, 2, 3)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(table), size=(samples, len(table)))
    resampled = _f1(table[draws].sum(axis=1))  # (samples, 2)
    point = _f1(table.sum(axis=0))

    def interval(values: np.ndarray) -> tuple[float, float]:
        lo, hi = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
        return float(lo), float(hi)

    return PairedF1(float(point[0]), float(point[1]), interval(resampled[:, 0]),
                    interval(resampled[:, 1]), interval(resampled[:, 1] - resampled[:, 0]),
                    len(base_units), confidence)
