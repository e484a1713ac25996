"""Does fine-tuning on a few tiles of familiar imagery keep what the model knew?
(`make finetune-check-indomain`)

The protocol a new user follows: four NAIP scenes the model never trained on (held-out
validation images, 1 m RGB, the base model's own kind of data). The west half of each scene
becomes a training folder of 8 tiles of 512 x 512 px (`images/` + `masks/`, the shared data
layout); the east halves are segmented with the base and with the fine-tuned model and scored
against the reference fields (field F1, one-to-one at IoU >= 0.5), pooled and per scene.
The fine-tune keeps its weights whatever its verdict (--keep-finetuned), so that they are
scored on the east halves too; the result a user gets is those weights when the verdict was
"better", else the base. That result must not lose (>= before - 0.01), and the trainer's own
before/after of the fine-tuned weights must point the same way as the east halves'.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from farmseg.geoio.raster import write_window
from farmseg.jobs import drain, run_job
from farmseg.models.bundle import load_bundle
from farmseg.pipeline.segment import SegmentOptions, segment_job
from farmseg.scoring.evaluate import Score, evaluate_files

TILE = 512
NO_CHANGE = 0.02  # field F1: a smaller change is within the noise of ~100 fields


@dataclass(frozen=True)
class Scene:
    """One held-out scene: its east half and the east half's reference instances."""

    name: str
    east: Path
    east_ref: Path


def _copy_window(source: Path, target: Path, window: Window) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_window(source, window, target)


def build_protocol(data_dir: Path, names: list[str], work: Path) -> tuple[Path, list[Scene]]:
    """The training folder (west halves as 512 px tiles) and the east halves to score."""
    scenes = []
    for name in names:
        image = data_dir / "images" / f"{name}.tif"
        with rasterio.open(image) as src:
            width, height = src.width, src.height
        west = width // 2
        for row in range(0, height - TILE + 1, TILE):
            for col in range(0, west - TILE + 1, TILE):
                tile = f"{name}_{row}_{col}"
                window = Window(col, row, TILE, TILE)
                _copy_window(image, work / "train" / "images" / f"{tile}.tif", window)
                _copy_window(data_dir / "masks" / f"{name}.tif",
                             work / "train" / "masks" / f"{tile}.tif", window)
        east = Window(west, 0, width - west, height)
        scenes.append(Scene(name, _copy_window(image, work / "east" / f"{name}.tif", east),
                            _copy_window(data_dir / "instances" / f"{name}.tif",
                                         work / "east_ref" / f"{name}.tif", east)))
    return work / "train", scenes


def score_segmented(model: str, image: Path, reference: Path, work: Path) -> Score:
    """Field scores of `farmseg segment IMAGE --model MODEL` + `farmseg evaluate`."""
    fields = work / f"{image.stem}.{Path(model).name}.gpkg"
    drain(segment_job(SegmentOptions(input=image, output=fields, model=model, overwrite=True,
                                     work_dir=work)))
    return evaluate_files(fields, reference, image).score


def score_scenes(model: str, scenes: list[Scene], work: Path) -> list[Score]:
    return [score_segmented(model, s.east, s.east_ref, work) for s in scenes]


def _table(names: list[str], before: list[Score], after: list[Score]) -> str:
    lines = ["| east half | fields (ref) | predicted before -> after | F1 before -> after |",
             "|---|---|---|---|"]
    for name, b, a in zip(names, before, after):
        lines.append(f"| {name} | {b.reference} | {b.predicted} -> {a.predicted} | "
                     f"{b.f1:.3f} -> {a.f1:.3f} |")
    b, a = sum(before, Score()), sum(after, Score())
    lines.append(f"| **all 4** | {b.reference} | {b.predicted} -> {a.predicted} | "
                 f"**{b.f1:.3f} -> {a.f1:.3f}** ({a.f1 - b.f1:+.3f}) |")
    return "\n".join(lines)


def _finetune(args: argparse.Namespace, train_dir: Path, out: Path) -> tuple[float, dict]:
    """Fine-tune as the user does, keeping the fine-tuned weights whatever the verdict (so
    they can be scored on the east halves too); minutes taken and the `finetune` record."""
    from farmseg.training.trainer import TrainConfig, train_job

    start = time.monotonic()
    run_job(train_job(TrainConfig(data=str(train_dir), out=str(out), base=args.base,
                                  epochs=args.epochs, tile=args.tile, keep_finetuned=True,
                                  command=" ".join(sys.argv))))
    record = json.loads((out / "farmseg.json").read_text())["finetune"]
    return (time.monotonic() - start) / 60, record


def _report(before: list[Score], after: list[Score], record: dict) -> bool:
    """Print the verdicts; True when the result lost nothing and the trainer's before/after
    points the way the east halves do."""
    b, a = sum(before, Score()), sum(after, Score())
    result = a if record["verdict"] == "better" else b
    print(f"trainer's own validation ({record['validation']['fields']} fields, "
          f"{record['validation']['pixels'] / 1e6:.2f} MPix): {record['summary']}; "
          f"verdict: {record['verdict']}")
    print(f"settings: {record['settings']['reason']}")
    print(f"result bundle (without --keep-finetuned: the {'fine-tuned' if result is a else 'base'}"
          f" model) on the east halves: F1 {result.f1:.3f} ({result.f1 - b.f1:+.3f})")
    east_gain = a.f1 - b.f1
    # a change under NO_CHANGE either way has no direction: both that small agree
    flat = abs(east_gain) < NO_CHANGE and abs(record["gain"]) < NO_CHANGE
    same_way = flat or bool(np.sign(east_gain) == np.sign(record["gain"]))
    no_loss = result.f1 >= b.f1 - 0.01
    print(f"no loss (result >= before - 0.01): {'yes' if no_loss else 'NO'}; fine-tuned "
          f"weights: trainer {record['gain']:+.3f}, east halves {east_gain:+.3f}, same "
          f"direction (or both under {NO_CHANGE} either way): {'yes' if same_way else 'NO'}")
    return no_loss and same_way


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/agoro-naip/train")
    parser.add_argument("--base", default="default")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--tile", type=int, default=256)
    args = parser.parse_args(argv)
    base = load_bundle(args.base)
    names = base.validation_images[:4]
    with tempfile.TemporaryDirectory(prefix="farmseg-indomain-") as tmp:
        work = Path(tmp)
        train_dir, scenes = build_protocol(Path(args.data), names, work)
        before = score_scenes(args.base, scenes, work)
        minutes, record = _finetune(args, train_dir, work / "tuned")
        after = score_scenes(str(work / "tuned"), scenes, work)
    print(f"in-domain fine-tune: 8 tiles of {TILE} px (west halves of {', '.join(names)}), "
          f"--tile {args.tile} --epochs {args.epochs}: {minutes:.1f} min")
    print("fine-tuned weights (trained with --keep-finetuned) on the east halves:")
    print(_table(names, before, after))
    return 0 if _report(before, after, record) else 1


if __name__ == "__main__":
    sys.exit(main())
