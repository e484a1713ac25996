"""The settings of a training run (no torch here)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """Everything a training run needs; recorded in the bundle's provenance."""

    data: str
    out: str
    base: str | None = None
    arch: str = "unet"
    encoder: str = "efficientnet-lite0"
    epochs: int = 10
    tile: int = 256
    batch: int = 8
    lr: float = 1e-3
    val_fraction: float = 0.2
    freeze_encoder: bool = False
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CPUs with native bf16, else fp32
    seed: int = 0
    resume: bool = False
    checkpoint: bool = False  # also write the best epoch (marked partial) as training goes
    scale_jitter: float = 0.0  # crops resampled by a random factor in [1/(1+j), 1+j]
    pixel_size: float | None = None  # train at this pixel size (m); None: the base's
    command: str = field(default_factory=lambda: " ".join(sys.argv))
