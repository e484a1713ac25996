"""Bootstrap intervals of field F1: totals agree with the score, gains need evidence."""

from __future__ import annotations

import numpy as np

from farmseg.scoring.evaluate import score_instances
from farmseg.scoring.uncertainty import field_units, paired_f1


def grid_of_fields(rows: int, cols: int, size: int = 10) -> np.ndarray:
    """Instance raster of rows x cols square fields separated by 1 px lanes."""
    ref = np.zeros((rows * (size + 1), cols * (size + 1)), np.int32)
    for r in range(rows):
        for c in range(cols):
            ref[r * (size + 1):r * (size + 1) + size,
                c * (size + 1):c * (size + 1) + size] = r * cols + c + 1
    return ref


def merged_pairs(ref: np.ndarray) -> np.ndarray:
    """Every two horizontal neighbours merged into one predicted field (under-segmented);
    `ref` from grid_of_fields with an even number of columns."""
    pred = np.where(ref > 0, (ref - 1) // 2 + 1, 0)
    for lane in range(10, ref.shape[1], 22):  # the lane inside each merged pair
        pred[:, lane] = pred[:, lane - 1]
    return pred


def test_unit_counts_add_up_to_the_score():
    ref = grid_of_fields(4, 6)
    pred = merged_pairs(ref)
    pred[0:5, 0:5] = 0
    pred[43, :] = 99  # a predicted field on no reference field (the last lane)
    units, orphans = field_units(pred, ref)
    totals = sum(units.values()) + sum(orphans)
    score = score_instances(pred, ref)
    assert totals.tolist() == [score.matches, score.predicted, score.reference]
    assert len(orphans) == 1


def test_identical_predictions_are_not_a_gain():
    ref = grid_of_fields(5, 8)
    result = paired_f1(ref, ref.copy(), ref)
    assert result.base == result.candidate == 1.0
    assert result.difference_interval == (0.0, 0.0)
    assert not result.candidate_is_better


def test_a_clear_gain_over_many_fields_is_better():
    ref = grid_of_fields(6, 10)
    result = paired_f1(merged_pairs(ref), ref.copy(), ref)
    assert result.base < 0.2 and result.candidate == 1.0
    assert result.candidate_is_better
    assert result.reference_fields == 60
    assert "60 reference fields" in result.describe()


def test_one_more_match_among_few_fields_is_within_the_uncertainty():
    ref = grid_of_fields(1, 4)
    base = ref.copy()
    base[base == 4] = 0  # misses one of four fields
    result = paired_f1(base, ref.copy(), ref)
    assert result.difference > 0
    assert result.difference_interval[0] <= 0
    assert not result.candidate_is_better
