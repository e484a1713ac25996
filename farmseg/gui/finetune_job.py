"""What runs in the fine-tuning process (Qt-free): lay out the labels, check them, train.

The dialog (finetune.py) sends a FineTuneRequest to a job process (see job_process), which
runs its `job()`. torch is imported
only once every label has passed the core's checks, so bad data is reported in a second.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from farmseg.editing.layer import EditableLayer
from farmseg.errors import FarmsegError
from farmseg.jobs import Job, Progress
from farmseg.models.bundle import ModelBundle, load_bundle
from farmseg.training.corrections import write_corrections_folder
from farmseg.training.prepare import folder_from_files, folder_from_polygons_over_image
from farmseg.training.samples import find_labeled_pairs, images_pixel_size, load_sample


@dataclass
class Labels:
    """The labelled data as the user chose it."""

    kind: Literal["folder", "files", "polygons", "corrections"]
    paths: list[Path]  # [training folder] | picked images and labels | [image, polygon file]
    # | [image] of the corrections
    corrections: EditableLayer | None = None  # the corrected fields and their reviewed areas

    def prepare(self, work_dir: Path) -> Path:
        """A training folder (images/ + masks/ or fields/) holding these labels."""
        if self.kind == "folder":
            return self.paths[0]
        if self.kind == "polygons":
            return folder_from_polygons_over_image(self.paths[0], self.paths[1], work_dir)
        if self.corrections is not None:
            write_corrections_folder(self.paths[0], self.corrections, work_dir)
            return work_dir
        return folder_from_files(self.paths, work_dir)

    def user_path(self, path: str | None, data: Path) -> str | None:
        """The user's own file behind `path` of the prepared folder `data`: links are
        followed, the cropped image is the open image, the folder itself is not named."""
        if path is None or self.kind == "folder" or not Path(path).is_relative_to(data):
            return path
        inside = Path(path)
        if inside.is_symlink():
            return str(inside.resolve())
        if self.kind in ("polygons", "corrections") and inside.parent.name == "images":
            return str(self.paths[0])
        return None if inside == data else path


@dataclass
class FineTuneRequest:
    labels: Labels
    out: Path  # the bundle folder to write
    options: dict[str, Any]  # TrainConfig fields but data, out: base, epochs, tile, lr, ...
    work_dir: Path  # scratch folder for the prepared training folder; the parent removes it
    memory_hint = "try a smaller crop size or batch size"

    def job(self) -> Job[dict[str, Any]]:
        """The run, as the job process drives it."""
        return finetune_job(self)


def command_line(data: str, out: Path, options: dict[str, Any]) -> str:
    """The `farmseg train` command that runs the same training."""
    parts = ["farmseg", "train", "--base", str(options["base"]), "--data", data, "--out", str(out)]
    for key, value in options.items():
        if key != "base" and value not in (False, None):
            parts.append(f"--{key.replace('_', '-')}")
            if value is not True:
                parts.append(str(value))
    return shlex.join(parts)


def check_labels(data: Path, base: ModelBundle) -> Job[None]:
    """Load every labelled pair as training will (the base's bands, by description where the
    files have them), so that bad data stops the run first."""
    pairs = find_labeled_pairs(data)
    for done, (image, label) in enumerate(pairs, 1):
        load_sample(image, label, base.bands, base.band_names)
        yield Progress("check", done, len(pairs), f"checked {image.name}")


def finetune_job(request: FineTuneRequest) -> Job[dict[str, Any]]:
    """Prepare and check the labels, then fine-tune; the result is train_job's, with its
    history as plain dicts (the GUI process must not import torch to unpickle it)."""
    data = request.labels.prepare(request.work_dir / "data")
    try:
        # `default` is the bundled model for the labelled images' pixel size, as in training
        yield from check_labels(data, load_bundle(request.options["base"],
                                                  images_pixel_size(data)))
        yield Progress("load", 0, 0, "loading the model and scoring it on the validation tiles")
        from farmseg.training.trainer import TrainConfig, train_job

        config = TrainConfig(data=str(data), out=str(request.out),
                             command=command_line(str(data), request.out, request.options),
                             **request.options)
        result = yield from train_job(config)
    except FarmsegError as exc:
        raise type(exc)(request.labels.user_path(exc.path, data), exc.problem) from None
    return {**result, "history": [asdict(epoch) for epoch in result["history"]]}

