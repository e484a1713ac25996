"""Does fine-tuning pay off on imagery unlike the training data? (`make finetune-check`)

Builds a "new region" from held-out NAIP validation images (never trained on): a 2 x 2
mosaic resampled to 5 m, stored as uint16 with another colour balance. The western half
(two tiles) is labelled training data, the eastern half is scored before and after
fine-tuning (field-level F1, IoU >= 0.5, one-to-one).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from farmseg.jobs import drain
from farmseg.models.bundle import load_bundle
from farmseg.pipeline.segment import SegmentOptions, segment_job
from farmseg.scoring.evaluate import rasterize_instances, score_instances
from farmseg.training.labels import boundary_from_instances

# gain, offset, gamma
COLOUR = (np.array([41.0, 37.0, 55.0]), np.array([350.0, 520.0, 180.0]), 0.85)


def _mosaic(data_dir: Path, names: list[str], factor: int) -> tuple[np.ndarray, np.ndarray]:
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


def _recolour(image: np.ndarray) -> np.ndarray:
    gain, offset, gamma = COLOUR
    scaled = 255.0 * (image / 255.0) ** gamma
    return (scaled * gain[:, None, None] + offset[:, None, None]).astype(np.uint16)


def _write(path: Path, data: np.ndarray, transform, dtype: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[-1], height=data.shape[-2],
                       count=data.shape[0], dtype=dtype, crs="EPSG:32615",
                       transform=transform) as out:
        out.write(data.astype(dtype))
    return path


def build_region(data_dir: Path, names: list[str], work: Path, pixel: int) -> dict[str, Path]:
    image, instances = _mosaic(data_dir, names, pixel)
    image = _recolour(image)
    h, w = instances.shape
    west = w // 2
    origin = from_origin(500000, 4500000, pixel, pixel)
    paths = {}
    for index, (r0, r1) in enumerate(((0, h // 2), (h // 2, h))):
        transform = origin * rasterio.Affine.translation(0, r0)
        tile = f"west_{index}"
        _write(work / "train" / "images" / f"{tile}.tif", image[:, r0:r1, :west], transform,
               "uint16")
        mask = boundary_from_instances(instances[r0:r1, :west], radius=1)
        _write(work / "train" / "masks" / f"{tile}.tif", mask[None], transform, "uint8")
    east_transform = origin * rasterio.Affine.translation(west, 0)
    paths["east"] = _write(work / "east.tif", image[:, :, west:], east_transform, "uint16")
    paths["east_ref"] = _write(work / "east_instances.tif", instances[None, :, west:],
                               east_transform, "int32")
    paths["train"] = work / "train"
    return paths


def _east_f1(model: str, paths: dict[str, Path]) -> tuple[float, float]:
    result = drain(segment_job(SegmentOptions(input=paths["east"], model=model,
                                              work_dir=paths["east"].parent)))
    with rasterio.open(paths["east_ref"]) as src:
        ref, grid_transform = src.read(1), src.transform
    from farmseg.geoio.raster import Grid

    grid = Grid(ref.shape[1], ref.shape[0], grid_transform, result.layer.crs)
    score = score_instances(rasterize_instances(result.layer.geoms, grid), ref)
    return score.f1, score.pixel_iou


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/agoro-naip/train")
    parser.add_argument("--base", default="default")
    parser.add_argument("--pixel", type=int, default=5, help="metres per pixel")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args(argv)
    from farmseg.jobs import run_job
    from farmseg.training.trainer import TrainConfig, train_job

    base = load_bundle(args.base)
    names = [n.split("[")[0] for n in base.meta["training"]["validation"]][:4]
    with tempfile.TemporaryDirectory(prefix="farmseg-ftcheck-") as tmp:
        paths = build_region(Path(args.data), names, Path(tmp), args.pixel)
        before = _east_f1(args.base, paths)
        start = time.monotonic()
        config = TrainConfig(data=str(paths["train"]), out=str(Path(tmp) / "tuned"),
                             base=args.base, epochs=args.epochs, tile=args.tile, batch=8,
                             lr=1e-3, precision=args.precision, command=" ".join(sys.argv))
        run_job(train_job(config))
        minutes = (time.monotonic() - start) / 60
        after = _east_f1(str(Path(tmp) / "tuned"), paths)
    print(f"region: 2 x 2 held-out NAIP images ({', '.join(names)}), {args.pixel} m, uint16, "
          "recoloured; west half = 2 training tiles, east half scored")
    print(f"fine-tune: --tile {args.tile} --epochs {args.epochs}: {minutes:.1f} min")
    print(f"east half  field F1  pixel IoU\n  before    {before[0]:.3f}     {before[1]:.3f}\n"
          f"  after     {after[0]:.3f}     {after[1]:.3f}\nF1 gain: {after[0] - before[0]:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
