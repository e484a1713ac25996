"""Rehearsal: a few crops of a model's own training data, shipped inside its bundle.

Fine-tuning on a handful of user tiles makes a network forget what it knew (it memorises the
tiles). Mixing crops of the base model's own training data into every batch keeps it close
to what it learned. The crops live in the bundle as `replay.npz` (uint8 image crops and
their 3-class masks; numpy arrays only, read without pickle) beside the data's licence.
`python -m farmseg.training.replay --data DIR --bundle models/default` writes them.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.transform import Affine

from farmseg.errors import ModelError
from farmseg.geoio.atomic import atomic_file
from farmseg.training.samples import Sample, load_sample, resampled

REPLAY_NAME = "replay.npz"
REPLAY_LICENSE_NAME = "replay-LICENSE.txt"
CROP = 192
CROPS_PER_IMAGE = 2


def _crop_origins(height: int, width: int, size: int, count: int, rng: random.Random
                  ) -> list[tuple[int, int]]:
    """`count` random origins of size x size crops (one when the crop is the whole image)."""
    if (height, width) == (size, size):
        return [(0, 0)]
    return [(rng.randrange(0, height - size + 1), rng.randrange(0, width - size + 1))
            for _ in range(count)]


def build_replay_set(data_dir: Path, names: list[str], bundle_dir: Path, seed: int = 0,
                     pixel_size: float | None = None) -> Path:
    """Write `CROPS_PER_IMAGE` random crops of each named training image (images/NAME.tif,
    masks/NAME.tif), resampled to `pixel_size` metres first when given (the model's own,
    for a model trained at a coarser pixel size), and the data set's LICENSE into
    `bundle_dir`."""
    rng = random.Random(seed)
    samples = [load_sample(data_dir / "images" / f"{name}.tif",
                           data_dir / "masks" / f"{name}.tif") for name in names]
    if pixel_size:
        samples = [resampled(sample, pixel_size) for sample in samples]
    pixel_sizes = {round(sample.pixel_size, 3) for sample in samples}
    if len(pixel_sizes) != 1:
        raise ModelError(data_dir, f"replay images differ in pixel size: {sorted(pixel_sizes)}")
    size = min([CROP] + [min(sample.shape) for sample in samples])
    images, masks = [], []
    for sample in samples:
        for row, col in _crop_origins(*sample.shape, size, CROPS_PER_IMAGE, rng):
            images.append(sample.image[:, row:row + size, col:col + size].astype(np.uint8))
            masks.append(sample.mask[row:row + size, col:col + size].astype(np.uint8))
    target = bundle_dir / REPLAY_NAME
    with atomic_file(target) as tmp, open(tmp, "wb") as out:
        np.savez_compressed(out, images=np.stack(images), masks=np.stack(masks),
                            pixel_size=np.float64(pixel_sizes.pop()),
                            names=np.array(names))
    licence = data_dir.parent / "LICENSE"
    notice = (f"The crops in {REPLAY_NAME} come from the agoro-naip data set "
              "(USDA NAIP imagery, US public domain; field labels MIT-licensed):\n\n")
    (bundle_dir / REPLAY_LICENSE_NAME).write_text(notice + licence.read_text())
    return target


def load_replay_samples(bundle_dir: Path) -> list[Sample]:
    """The bundle's replay crops as training samples (none when it ships no replay set)."""
    path = Path(bundle_dir) / REPLAY_NAME
    if not path.is_file():
        return []
    try:
        with np.load(path, allow_pickle=False) as data:
            images, masks = data["images"], data["masks"]
            pixel_size = float(data["pixel_size"])
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(path, f"cannot read the replay set ({exc})") from None
    return [Sample(f"replay[{i}]", image, mask, np.ones(mask.shape, bool), "uint8", pixel_size,
                   [str(path)], Affine.scale(pixel_size, -pixel_size))
            for i, (image, mask) in enumerate(zip(images, masks))]


def replay_scaling(meta: dict[str, Any]) -> dict[str, Any]:
    """The scaling the replay crops are read with: recorded with the set when a fine-tune
    passed it on (its own scaling may be another data's stretch), else the bundle's own."""
    return dict(meta.get("replay", {}).get("scaling") or meta["scaling"])


def padded(sample: Sample, size: int) -> Sample:
    """The sample at least `size` px a side: mirrored pixels around it, not valid (their
    labels are ignored), so a crop of `size` keeps its pixel size."""
    h, w = sample.shape
    dy, dx = max(0, size - h), max(0, size - w)
    if not dy and not dx:
        return sample
    pad = ((dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2))
    return replace(sample, image=np.pad(sample.image, ((0, 0), *pad), mode="reflect"),
                   mask=np.pad(sample.mask, pad), valid=np.pad(sample.valid, pad),
                   transform=sample.transform * Affine.translation(-pad[1][0], -pad[0][0]))


def rehearsal_samples(bundle_dir: Path, pixel_size: float | None, crop: int) -> list[Sample]:
    """The bundle's replay crops at the training pixel size, padded to the crop size."""
    samples = load_replay_samples(bundle_dir)
    if pixel_size:
        samples = [resampled(s, pixel_size) for s in samples]
    return [padded(s, crop) for s in samples]


def copy_replay(base_dir: Path, folder: Path) -> bool:
    """Pass the base's replay set (and its licence) on to a new bundle; False when it has
    none."""
    if not (Path(base_dir) / REPLAY_NAME).is_file():
        return False
    for name in (REPLAY_NAME, REPLAY_LICENSE_NAME):
        if (Path(base_dir) / name).is_file():
            shutil.copyfile(Path(base_dir) / name, folder / name)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write a bundle's replay set")
    parser.add_argument("--data", type=Path, required=True, help="images/ + masks/ folder")
    parser.add_argument("--bundle", type=Path, required=True, help="bundle folder to add it to")
    args = parser.parse_args(argv)
    from farmseg.models.bundle import load_bundle

    bundle = load_bundle(str(args.bundle))
    held_out = set(bundle.validation_images)
    names = sorted(p.stem for p in (args.data / "images").glob("*.tif") if p.stem not in held_out)
    path = build_replay_set(args.data, names, args.bundle, pixel_size=bundle.pixel_size_m)
    with np.load(path, allow_pickle=False) as data:
        shape = data["images"].shape
    print(f"{path}: {shape[0]} crops of {shape[-1]} px from {len(names)} images "
          f"({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
