"""The training data as the network sees it: input scaling and random augmented crops
(no torch here)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from farmseg.geoio.raster import resize_bands
from farmseg.models.bundle import normalization
from farmseg.models.scaling import (
    apply_scaling,
    fixed_scaling,
    percentile_scaling,
    reference_percentiles,
    stretch_to_reference,
)
from farmseg.training.samples import Sample


def pixel_sample(samples: list[Sample], per_image: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Random pixels (bands, n) of all samples and their validity."""
    rng = np.random.default_rng(0)
    stacks, valids = [], []
    for s in samples:
        flat = s.image.reshape(s.image.shape[0], -1)
        idx = rng.choice(flat.shape[1], size=min(flat.shape[1], per_image), replace=False)
        stacks.append(flat[:, idx].astype(np.float64))
        valids.append(s.valid.reshape(-1)[idx])
    return np.concatenate(stacks, axis=1), np.concatenate(valids)


def choose_scaling(samples: list[Sample], base_meta: dict[str, Any] | None) -> dict[str, Any]:
    """Keep the base model's scaling for data of its dtype; other data is stretched to match
    the base's training data; without a base, fixed 0..255 for uint8 or a percentile
    stretch. Records the training data's percentiles after scaling (`reference`), so other
    dtypes can later be matched to them."""
    dtype = samples[0].dtype
    if base_meta is not None and base_meta["input"]["dtype"] == dtype:
        scaling = dict(base_meta["scaling"])
    elif base_meta is not None:  # new kind of data: make it look like the base's data
        scaling = stretch_to_reference(*pixel_sample(samples),
                                       base_meta["scaling"].get("reference"))
    elif dtype == "uint8":
        n = samples[0].image.shape[0]
        scaling = fixed_scaling([0.0] * n, [255.0] * n)
    else:
        scaling = percentile_scaling(*pixel_sample(samples))
    scaling["reference"] = reference_percentiles(*pixel_sample(samples), scaling)
    return scaling


class CropSampler:
    """Random augmented crops (scale, flips, 90° turns, colour jitter) from in-memory samples."""

    def __init__(self, samples: list[Sample], crop: int, scaling: dict[str, Any], seed: int,
                 scale_jitter: float = 0.0):
        self.samples = samples
        self.crop = crop
        self.scaling = scaling
        self.rng = np.random.default_rng(seed)
        self.max_zoom = 1.0 + scale_jitter
        # by labelled pixels: corrections label only their reviewed areas
        sizes = np.array([max(1, np.count_nonzero(s.valid)) for s in samples], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def resampled_crop(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """A crop (bands, crop, crop) and its mask (-100 where not valid), taken from a
        window of a random size around `crop` and resampled to `crop` (fields seen larger
        or smaller than at the image's own pixel size)."""
        h, w = sample.shape
        zoom = float(np.exp(self.rng.uniform(-np.log(self.max_zoom), np.log(self.max_zoom))))
        size = min(h, w, max(8, round(self.crop / zoom)))
        y = self.rng.integers(0, h - size + 1)
        x = self.rng.integers(0, w - size + 1)
        img = sample.image[:, y:y + size, x:x + size]
        msk: np.ndarray = np.where(sample.valid[y:y + size, x:x + size],
                                   sample.mask[y:y + size, x:x + size], 255).astype(np.uint8)
        if size != self.crop:
            img = resize_bands(img, self.crop, self.crop)
            msk = cv2.resize(msk, (self.crop, self.crop), interpolation=cv2.INTER_NEAREST)
        return img, np.where(msk == 255, -100, msk.astype(np.int64))

    def crops(self, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """`n` augmented crops scaled to 0..1 (by this sampler's scaling) and their masks."""
        images, masks = [], []
        for _ in range(n):
            sample = self.samples[self.rng.choice(len(self.samples), p=self.weights)]
            img, msk = self.resampled_crop(sample)
            net = apply_scaling(img, self.scaling, [0.0] * img.shape[0], [1.0] * img.shape[0])
            gain = self.rng.uniform(0.8, 1.2, size=(net.shape[0], 1, 1)).astype(np.float32)
            net = np.clip(net * gain + self.rng.uniform(-0.08, 0.08), 0, 1)
            k = int(self.rng.integers(0, 4))
            net, msk = np.rot90(net, k, axes=(1, 2)), np.rot90(msk, k)
            if self.rng.random() < 0.5:
                net, msk = net[:, :, ::-1], msk[:, ::-1]
            images.append(net)
            masks.append(msk)
        return images, masks

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`n` augmented crops, normalized for the network, and their masks."""
        return network_batch(*self.crops(n))


def network_batch(images: list[np.ndarray], masks: list[np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Crops scaled to 0..1 as one normalized network batch, and their masks."""
    batch = np.stack(images).astype(np.float32)
    mean, std = (np.asarray(v, np.float32) for v in normalization(batch.shape[1]))
    batch = (batch - mean[None, :, None, None]) / std[None, :, None, None]
    return batch, np.stack(masks)


class RehearsalSampler:
    """Batches of the user's crops with a share of each batch taken from the base model's
    own training data (the replay crops), each scaled with its own data's scaling."""

    def __init__(self, user: CropSampler, replay: CropSampler | None, share: float) -> None:
        self.user, self.replay, self.share = user, replay, share

    def replay_count(self, n: int) -> int:
        """How many of a batch of `n` are replay crops (at least one user crop)."""
        if self.replay is None or self.share <= 0:
            return 0
        return min(n - 1, max(1, round(n * self.share)))

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`n` crops, normalized for the network: user crops first, then replay crops."""
        k = self.replay_count(n)
        images, masks = self.user.crops(n - k)
        if self.replay is not None and k:
            more_images, more_masks = self.replay.crops(k)
            images, masks = images + more_images, masks + more_masks
        return network_batch(images, masks)
