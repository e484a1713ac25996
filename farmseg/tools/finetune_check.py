"""Does fine-tuning pay off on imagery unlike the training data? (`make finetune-check`)

Builds a "new region" from held-out NAIP validation images (never trained on): a 2 x 2
mosaic resampled to 5 m (`--pixel 10`: 10 m, Sentinel-2's pixel size), stored as uint16
with another colour balance. The western half (two tiles) is labelled training data; the
eastern half is segmented with the base and with the fine-tuned model and scored against its
reference fields (`segment` + `evaluate`: field-level F1, IoU >= 0.5, one-to-one), with the
time per km² of the segment runs. The fine-tune keeps its weights whatever its verdict
(--keep-finetuned), so that they are scored too; the result a user gets is those weights
when the verdict was "better", else the base.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from farmseg.jobs import run_job
from farmseg.models.bundle import load_bundle
from farmseg.scoring.evaluate import Score
from farmseg.tools.indomain_check import score_segmented
from farmseg.training.labels import boundary_from_instances

# gain, offset, gamma
COLOUR = (np.array([41.0, 37.0, 55.0]), np.array([350.0, 520.0, 180.0]), 0.85)


def mosaic(data_dir: Path, names: list[str], factor: int) -> tuple[np.ndarray, np.ndarray]:
    """2 x 2 mosaic of images and instance rasters, downsampled by `factor`."""
    rows = []
    offset = 0
    for r in range(2):
        images, instances = [], []
        for c in range(2):
            name = names[2 * r + c]
            with rasterio.open(data_dir / "images" / f"{name}.tif") as src:
                h, w = src.height // factor, src.width // factor
                images.append(src.read(out_shape=(3, h, w), resampling=Resampling.average))
            with rasterio.open(data_dir / "instances" / f"{name}.tif") as src:
                inst = src.read(1, out_shape=(h, w), resampling=Resampling.mode).astype(np.int32)
                instances.append(np.where(inst > 0, inst + offset, 0))
                offset += int(inst.max()) + 1
        rows.append((np.concatenate(images, axis=2), np.concatenate(instances, axis=1)))
    return (np.concatenate([r[0] for r in rows], axis=1),
            np.concatenate([r[1] for r in rows], axis=0))


def recolour(image: np.ndarray) -> np.ndarray:
    gain, offset, gamma = COLOUR
    scaled = 255.0 * (image / 255.0) ** gamma
    return (scaled * gain[:, None, None] + offset[:, None, None]).astype(np.uint16)


def write_raster(path: Path, data: np.ndarray, transform, dtype: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[-1], height=data.shape[-2],
                       count=data.shape[0], dtype=dtype, crs="EPSG:32615",
                       transform=transform) as out:
        out.write(data.astype(dtype))
    return path


def build_region(data_dir: Path, names: list[str], work: Path, pixel: int) -> dict[str, Path]:
    """The region at `pixel` m in `work`: train/ (west half as two labelled tiles), east.tif
    and its reference instances east_instances.tif."""
    image, instances = mosaic(data_dir, names, pixel)
    image = recolour(image)
    h, w = instances.shape
    west = w // 2
    origin = from_origin(500000, 4500000, pixel, pixel)
    paths = {}
    for index, (r0, r1) in enumerate(((0, h // 2), (h // 2, h))):
        transform = origin * rasterio.Affine.translation(0, r0)
        tile = f"west_{index}"
        write_raster(work / "train" / "images" / f"{tile}.tif", image[:, r0:r1, :west], transform,
               "uint16")
        mask = boundary_from_instances(instances[r0:r1, :west], radius=1)
        write_raster(work / "train" / "masks" / f"{tile}.tif", mask[None], transform, "uint8")
    east_transform = origin * rasterio.Affine.translation(west, 0)
    paths["east"] = write_raster(work / "east.tif", image[:, :, west:], east_transform, "uint16")
    paths["east_ref"] = write_raster(work / "east_instances.tif", instances[None, :, west:],
                               east_transform, "int32")
    paths["train"] = work / "train"
    return paths


@dataclass(frozen=True)
class EastScore:
    """A model's fields on the east half and the time segment + evaluate took per km²."""

    score: Score
    seconds_per_km2: float


def east_score(model: str, paths: dict[str, Path]) -> EastScore:
    """`segment` + `evaluate` of the east half with `model`, timed."""
    with rasterio.open(paths["east"]) as src:
        km2 = src.width * src.height * abs(src.transform.a * src.transform.e) / 1e6
    start = time.monotonic()
    score = score_segmented(model, paths["east"], paths["east_ref"], paths["east"].parent)
    return EastScore(score, (time.monotonic() - start) / km2)


def _row(label: str, east: EastScore) -> str:
    s = east.score
    return (f"| {label} | {s.reference} | {s.predicted} | {s.f1:.3f} | {s.pixel_iou:.3f} | "
            f"{east.seconds_per_km2:.1f} |")


def check_arguments(doc: str, pixel: int, argv: list[str] | None) -> argparse.Namespace:
    """The options the fine-tune checks share (`pixel`: the region's default pixel size)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/agoro-naip/train")
    parser.add_argument("--base", default="default")
    parser.add_argument("--pixel", type=int, default=pixel, help="metres per pixel")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--keep", type=Path, help="build the region and the fine-tuned model "
                        "in this folder and keep them (default: a temporary folder)")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class CheckRun:
    """A fine-tune check: the east half before and after, the trainer's record, the time."""

    names: list[str]
    before: EastScore
    after: EastScore  # the fine-tuned weights, whatever the verdict
    record: dict
    minutes: float
    cpu_minutes: float

    @property
    def kept(self) -> str:
        return "fine-tuned" if self.record["verdict"] == "better" else "base"

    @property
    def result(self) -> EastScore:
        """What `farmseg train` gives a user without --keep-finetuned."""
        return self.after if self.kept == "fine-tuned" else self.before

    def report(self) -> None:
        """The trainer's verdict and the east half's table."""
        print(f"fine-tune: {self.minutes:.1f} min ({self.cpu_minutes:.1f} CPU min); trainer's "
              f"validation: {self.record['summary']}; verdict: {self.record['verdict']}")
        print(f"settings: {self.record['settings']['reason']}")
        print("| east half | reference fields | predicted | field F1 | pixel IoU | "
              "s per km² (segment + evaluate) |\n|---|---|---|---|---|---|")
        print(_row("before (base)", self.before))
        print(_row("fine-tuned weights (--keep-finetuned)", self.after))
        print(_row(f"result without --keep-finetuned (the {self.kept} model)", self.result))
        print(f"F1 gain: fine-tuned {self.after.score.f1 - self.before.score.f1:+.3f}, "
              f"result {self.result.score.f1 - self.before.score.f1:+.3f}")


Region = Callable[[Path, list[str], Path], dict[str, Path]]


def run_check(args: argparse.Namespace, build: Region, prefix: str) -> CheckRun:
    """Build the region (`build(data, names, work)`: train/, east.tif, east_instances.tif),
    score the east half with the base, fine-tune on train/ keeping the weights, score again."""
    from farmseg.training.trainer import TrainConfig, train_job

    base = load_bundle(args.base, args.pixel)
    names = base.validation_images[:4]
    folder = (nullcontext(str(args.keep)) if args.keep
              else tempfile.TemporaryDirectory(prefix=prefix))
    with folder as tmp:
        work = Path(tmp)
        paths = build(Path(args.data), names, work)
        before = east_score(args.base, paths)
        start, cpu = time.monotonic(), time.process_time()
        run_job(train_job(TrainConfig(data=str(paths["train"]), out=str(work / "tuned"),
                                      base=args.base, epochs=args.epochs, tile=args.tile,
                                      precision=args.precision, keep_finetuned=True,
                                      command=" ".join(sys.argv))))
        minutes = (time.monotonic() - start) / 60
        cpu_minutes = (time.process_time() - cpu) / 60
        record = json.loads((work / "tuned" / "farmseg.json").read_text())["finetune"]
        after = east_score(str(work / "tuned"), paths)
    return CheckRun(names, before, after, record, minutes, cpu_minutes)


def main(argv: list[str] | None = None) -> int:
    args = check_arguments(__doc__ or "", 5, argv)
    run = run_check(args, lambda data, names, work: build_region(data, names, work, args.pixel),
                    "farmseg-ftcheck-")
    print(f"region: 2 x 2 held-out NAIP images ({', '.join(run.names)}), {args.pixel} m, "
          "uint16, recoloured; west half = 2 training tiles, east half scored (segment + "
          f"evaluate); --tile {args.tile} --epochs {args.epochs}")
    run.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
