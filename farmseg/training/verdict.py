"""Is the fine-tuned model better than its base on the user's validation block? (no torch)

Both models' probabilities of the validation block (predicted by the pipeline's tiled
inference, as `segment` predicts) become fields the way `segment` makes them. The base
keeps its own thresholds; the fine-tuned model's are re-tuned on the block (the grid of
`farmseg validate --tune`, starting from the base's). Field F1 of the two is compared with a
paired bootstrap over the reference fields (scoring/uncertainty.py). The fine-tuned model
replaces the base only when it is better beyond that uncertainty (see `is_better`).
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.transform import array_bounds

from farmseg.scoring.evaluate import Score, score_instances
from farmseg.scoring.uncertainty import PairedF1, paired_f1
from farmseg.scoring.validation import BOUNDARY_GRID, FIELD_GRID, SEED_GRID
from farmseg.training.samples import Sample
from farmseg.training.scoring import predicted_fields, sample_reference, write_probabilities

# two-sided level of the bootstrap intervals. The question is one-sided (is the gain above
# 0?), so "the lower end of the 80 % interval is above 0" is 90 % one-sided confidence.
# Measured (README, "Fine-tuning"): 5 m region +0.176 (+0.071 .. +0.279, 39 fields; unseen
# east half +0.052); in-domain NAIP -0.009 (-0.058 .. +0.040, 36 fields; east half -0.003)
CONFIDENCE = 0.80


@dataclass(frozen=True)
class Verdict:
    """The comparison on the validation block and what the run keeps."""

    paired: PairedF1
    pixels: int  # valid validation pixels
    thresholds: dict[str, float]  # the fine-tuned model's, re-tuned on the block
    untuned_f1: float  # the fine-tuned model at the base's thresholds
    keep_finetuned: bool = False  # the fine-tuned weights asked for whatever the verdict
    base_score: Score = field(default_factory=Score)
    candidate_score: Score = field(default_factory=Score)
    blocks: tuple[tuple[float, float, float, float], ...] = ()  # W, S, E, N in the images' CRS

    @property
    def is_better(self) -> bool:
        """Better beyond the uncertainty: the lower end of the gain's interval is above 0."""
        return self.paired.difference_interval[0] > 0

    @property
    def kept(self) -> str:
        return "fine-tuned" if self.is_better or self.keep_finetuned else "base"

    def line(self) -> str:
        """The plain verdict for the CLI and the GUI."""
        size = (f"{self.paired.reference_fields} fields, {self.pixels / 1e6:.2f} MPix of "
                "your validation block")
        if self.is_better:
            head = "fine-tuned model is better"
        elif self.paired.difference > 0:
            head = "fine-tuned model was NOT better beyond the uncertainty"
        else:
            head = "fine-tuned model was NOT better"
        tail = {"fine-tuned": "the fine-tuned weights were kept" + (
            "" if self.is_better else " as asked (--keep-finetuned)"),
                "base": "the base model was kept as the result"}[self.kept]
        return f"{head} on {size}: {self.paired.describe()}; {tail}"

    def section(self) -> dict[str, Any]:
        """The bundle's `finetune` record."""
        p = self.paired
        return {
            "validation": {"fields": p.reference_fields, "pixels": self.pixels,
                           "blocks": [[round(v, 6) for v in b] for b in self.blocks]},
            "before": {"field_f1": round(p.base, 4),
                       "interval": [round(v, 4) for v in p.base_interval]},
            "after": {"field_f1": round(p.candidate, 4),
                      "interval": [round(v, 4) for v in p.candidate_interval],
                      "field_f1_base_thresholds": round(self.untuned_f1, 4)},
            "gain": round(p.difference, 4),
            "gain_interval": [round(v, 4) for v in p.difference_interval],
            "confidence": CONFIDENCE,
            "verdict": "better" if self.is_better else "not better",
            "kept": self.kept,
            "thresholds": self.thresholds,
            "summary": p.describe(),
        }


def _pooled(arrays: list[np.ndarray]) -> np.ndarray:
    """Instance rasters of several samples as one flat array with ids kept apart."""
    out, offset = [], 0
    for a in arrays:
        flat = a.ravel().astype(np.int64)
        out.append(np.where(flat > 0, flat + offset, 0))
        offset += int(flat.max(initial=0))
    return np.concatenate(out)


class ValidationFields:
    """Probabilities of the validation samples turned into fields with any thresholds."""

    def __init__(self, probabilities: list[np.ndarray], samples: list[Sample],
                 folder: Path) -> None:
        self.samples = samples
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = [write_probabilities(p, s, folder / f"probs_{i}.tif")
                      for i, (p, s) in enumerate(zip(probabilities, samples))]

    def fields(self, thresholds: dict[str, float]) -> list[np.ndarray]:
        return [predicted_fields(path, s, thresholds) for path, s in zip(self.paths,
                                                                         self.samples)]

    def score(self, thresholds: dict[str, float]) -> Score:
        return score_fields(self.fields(thresholds), self.samples)


def score_fields(fields: list[np.ndarray], samples: list[Sample]) -> Score:
    """Field scores of predicted instances against the samples' reference fields."""
    return sum((score_instances(f, sample_reference(s), s.valid)
                for f, s in zip(fields, samples)), Score())


def tune_thresholds(fields: ValidationFields, start: dict[str, float]) -> dict[str, float]:
    """The thresholds of the validate --tune grid with the best field F1 (`start` first,
    kept on ties)."""
    best, best_f1 = dict(start), fields.score(start).f1
    for f, s, b in itertools.product(FIELD_GRID, SEED_GRID, BOUNDARY_GRID):
        thresholds = {"field_threshold": f, "seed_threshold": s, "boundary_threshold": b}
        f1 = fields.score(thresholds).f1
        if f1 > best_f1:
            best, best_f1 = thresholds, f1
    return best


def judge(base_probs: list[np.ndarray], candidate_probs: list[np.ndarray],
          samples: list[Sample], base_thresholds: dict[str, float],
          keep_finetuned: bool = False) -> Verdict:
    """Compare the base (its thresholds) with the fine-tuned model (thresholds re-tuned)."""
    with tempfile.TemporaryDirectory(prefix="farmseg-verdict-") as tmp:
        base = ValidationFields(base_probs, samples, Path(tmp) / "base")
        candidate = ValidationFields(candidate_probs, samples, Path(tmp) / "candidate")
        thresholds = tune_thresholds(candidate, base_thresholds)
        base_fields, cand_fields = base.fields(base_thresholds), candidate.fields(thresholds)
        untuned = candidate.score(base_thresholds).f1
    reference = _pooled([sample_reference(s) for s in samples])
    valid = np.concatenate([s.valid.ravel() for s in samples])
    paired = paired_f1(_pooled(base_fields), _pooled(cand_fields), reference, valid,
                       confidence=CONFIDENCE)
    return Verdict(paired, int(valid.sum()), thresholds, untuned, keep_finetuned,
                   score_fields(base_fields, samples), score_fields(cand_fields, samples),
                   tuple(array_bounds(*s.shape, s.transform) for s in samples))
