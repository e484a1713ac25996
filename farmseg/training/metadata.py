"""A trained model's farmseg.json, as pure functions of the run's settings, data and
figures (no torch here).

Metric names say what each figure is: `val_pixel_iou` / `val_field_f1` score the kept
weights' polygons on the validation images the way `farmseg validate` does (field pixel
IoU; field-level F1 at IoU >= 0.5), `base_val_*` the same for the base model, and
`val_selection_score` is what the epoch was kept by (see `selection_score`; None when
fine-tuning, which keeps the last epoch). A fine-tune also records `finetune`: the size of
its validation block, before/after field F1 with bootstrap intervals, the verdict and which
weights were kept (training/verdict.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from farmseg.models.bundle import CLASS_NAMES, SCHEMA_VERSION, ModelBundle, normalization
from farmseg.training.config import TrainConfig
from farmseg.training.samples import Sample

DEFAULT_INFERENCE = {"tile": 512, "overlap": 64}


@dataclass(frozen=True)
class ModelFacts:
    """What a run fixes before its first step: the network, what it reads, the data."""

    name: str
    arch: str
    encoder: str
    bands: list[int]
    band_names: list[str]
    dtype: str
    pixel_size_m: float
    scaling: dict[str, Any]
    postprocess: dict[str, float]
    files: list[str]
    validation: list[str]
    base_name: str | None = None
    base_meta: dict[str, Any] | None = None

    @property
    def n_bands(self) -> int:
        return len(self.bands)


@dataclass(frozen=True)
class Figures:
    """What training measured (None: not measured, e.g. without validation images)."""

    epochs_done: int = 0  # the kept epoch (0: the base model was never beaten)
    history: list[dict[str, Any]] = field(default_factory=list)
    selection_score: float | None = None
    val_pixel_iou: float | None = None
    val_field_f1: float | None = None
    base_val_pixel_iou: float | None = None
    base_val_field_f1: float | None = None
    finetune: dict[str, Any] | None = None  # verdict.Verdict.section()


def default_band_names(n_bands: int) -> list[str]:
    """Names for the bands of a model trained from scratch."""
    return ["red", "green", "blue"] if n_bands == 3 else [f"band{i}" for i in
                                                          range(1, n_bands + 1)]


def model_facts(config: TrainConfig, base: ModelBundle | None, arch: str, encoder: str,
                samples: list[Sample], val: list[Sample], scaling: dict[str, Any],
                postprocess: dict[str, float]) -> ModelFacts:
    """The facts of a run on `samples` (the training images at the training pixel size;
    `val` those held out)."""
    n_bands = samples[0].image.shape[0]
    return ModelFacts(
        name=Path(config.out).name, arch=arch, encoder=encoder,
        bands=base.bands if base else list(range(1, n_bands + 1)),
        band_names=base.band_names if base else default_band_names(n_bands),
        dtype=samples[0].dtype,
        pixel_size_m=float(np.median([s.pixel_size for s in samples])),
        scaling=scaling, postprocess=postprocess,
        files=sorted({f for s in samples + val for f in s.files}),
        validation=[s.name for s in val],
        base_name=base.name if base else None, base_meta=base.meta if base else None)


def model_meta(facts: ModelFacts) -> dict[str, Any]:
    """What inference needs to run the network: the base's metadata updated with the run's
    network, input, scaling and thresholds."""
    mean, std = normalization(facts.n_bands)
    meta = dict(facts.base_meta or {})
    meta.update({
        "schema_version": SCHEMA_VERSION,
        "name": facts.name,
        "arch": facts.arch,
        "encoder": facts.encoder,
        "classes": CLASS_NAMES,
        "input": {"bands": facts.bands, "band_names": facts.band_names, "dtype": facts.dtype,
                  "pixel_size_m": facts.pixel_size_m},
        "scaling": facts.scaling,
        "normalize": {"mean": mean, "std": std},
        "inference": meta.get("inference", DEFAULT_INFERENCE),
        "postprocess": facts.postprocess,
    })
    return meta


def training_metrics(figures: Figures) -> dict[str, Any]:
    """The bundle's `metrics`, rounded to 4 decimals; figures not measured are left out
    (the selection score is None without validation)."""
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    metrics: dict[str, Any] = {"val_selection_score": rounded(figures.selection_score)}
    if figures.val_field_f1 is not None:
        metrics["val_pixel_iou"] = rounded(figures.val_pixel_iou)
        metrics["val_field_f1"] = rounded(figures.val_field_f1)
    if figures.base_val_field_f1 is not None:
        metrics["base_val_pixel_iou"] = rounded(figures.base_val_pixel_iou)
        metrics["base_val_field_f1"] = rounded(figures.base_val_field_f1)
    return metrics


def training_section(config: TrainConfig, facts: ModelFacts, figures: Figures,
                     made: dict[str, str]) -> dict[str, Any]:
    """The bundle's `training` record: the run's data, settings, history and provenance."""
    return {
        "base": facts.base_name,
        "data": config.data,
        "files": facts.files,
        "validation": facts.validation,
        "config": {k: v for k, v in asdict(config).items() if k != "command"},
        "command": config.command,
        "epochs_done": figures.epochs_done,
        "history": figures.history,
        **made,
    }


def bundle_meta(config: TrainConfig, facts: ModelFacts, figures: Figures, partial: bool,
                made: dict[str, str]) -> dict[str, Any]:
    """The whole farmseg.json; `made` says when and with what (date, farmseg, torch,
    machine)."""
    meta = model_meta(facts)
    meta["partial"] = partial
    meta["training"] = training_section(config, facts, figures, made)
    # the base's validation figures and reduced-precision verdicts are not this model's
    meta.pop("precision", None)
    meta.pop("replay", None)  # recorded again where the replay set is passed on
    meta["metrics"] = training_metrics(figures)
    if figures.finetune is not None:
        meta["finetune"] = figures.finetune
    return meta


def kept_base_meta(config: TrainConfig, facts: ModelFacts, figures: Figures,
                   made: dict[str, str]) -> dict[str, Any]:
    """The farmseg.json of a fine-tune that kept its base: the base's metadata (network,
    thresholds, figures, precision verdicts: all still true of its weights) under the new
    name, with this run's training record and `finetune` figures."""
    meta = dict(facts.base_meta or {})
    meta.update({"name": facts.name, "partial": False,
                 "training": training_section(config, facts, figures, made),
                 "finetune": figures.finetune})
    return meta
