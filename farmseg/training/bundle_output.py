"""A training run's bundle (imports torch): the kept weights, or the base's files when a
fine-tune was not better, with the run's figures; and what `train_job` returns."""

from __future__ import annotations

import datetime as _dt
import platform
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from farmseg import __version__
from farmseg.models.bundle import (
    CLASS_NAMES,
    META_NAME,
    WEIGHTS_NAME,
    ModelBundle,
    write_bundle_atomically,
    write_meta,
)
from farmseg.models.nets import build_network, save_weights
from farmseg.training.metadata import bundle_meta, kept_base_meta
from farmseg.training.replay import copy_replay, replay_scaling

if TYPE_CHECKING:
    from farmseg.training.trainer import TrainingRun


def weights_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's weights."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}



def made_by() -> dict[str, str]:
    """When and with what a bundle was made."""
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "farmseg": __version__, "torch": torch.__version__,
            "machine": platform.processor() or platform.machine()}


def export_network(run: TrainingRun) -> torch.nn.Module:
    """A fresh network holding the kept weights (else the current ones) as the bundle stores
    them, float16 values, so that the ONNX export computes exactly what the weights do."""
    state = run.state.best.state or weights_copy(run.opt.model)
    facts = run.facts
    model = build_network(facts.arch, facts.encoder, facts.n_bands, len(CLASS_NAMES))
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                           for k, v in state.items()})
    return model.eval()


def write_bundle(run: TrainingRun, partial: bool) -> Path:
    """Write the kept weights as a complete bundle (atomically) at the run's `out`; when a
    fine-tune was not better, the base's files with this run's figures."""
    verdict = run.state.verdict
    if verdict is not None and verdict.kept == "base" and run.base is not None:
        return write_base_copy(run, run.base)
    facts = run.facts
    if verdict is not None:
        facts = replace(facts, postprocess=verdict.thresholds)
    model = export_network(run)
    meta = bundle_meta(run.config, facts, run.state.figures(bool(run.val)), partial, made_by())

    def fill(folder: Path) -> None:
        from farmseg.models.onnx_export import export_onnx

        if run.base is not None and run.config.fine_tuning and copy_replay(run.base.path,
                                                                           folder):
            meta["replay"] = {"scaling": replay_scaling(run.base.meta)}
        save_weights(model, folder / WEIGHTS_NAME)
        write_meta(folder, meta)
        export_onnx(model, folder, run.facts.n_bands)

    return write_bundle_atomically(Path(run.config.out), fill)


def write_base_copy(run: TrainingRun, base: ModelBundle) -> Path:
    """The base model's files (weights, ONNX, replay set) under the run's name, its
    metadata recording this run and why the base was kept."""
    meta = kept_base_meta(run.config, run.facts, run.state.figures(bool(run.val)), made_by())

    def fill(folder: Path) -> None:
        for item in base.path.iterdir():
            if item.is_file() and item.name != META_NAME:
                shutil.copyfile(item, folder / item.name)
        write_meta(folder, meta)

    return write_bundle_atomically(Path(run.config.out), fill)


def training_result(run: TrainingRun, path: Path) -> dict[str, Any]:
    """What `train_job` returns: the bundle, validation figures (None when not measured;
    IoUs are field pixel IoUs of the polygons) and the epoch history."""
    final, base = run.state.final_score, run.state.base_score
    return {"bundle": str(path),
            "val_field_iou": final.pixel_iou if final else None,
            "val_field_f1": final.f1 if final else None,
            "base_val_field_iou": base.pixel_iou if base else None,
            "base_val_field_f1": base.f1 if base else None,
            "finetune": run.state.finetune_record(),
            "verdict": run.state.verdict.line() if run.state.verdict else None,
            "validation": run.facts.validation, "history": run.state.history}
