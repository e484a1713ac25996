"""The settings of a training run (no torch here)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

# defaults that differ between training from scratch and fine-tuning (--base): a fine-tune
# on a few tiles must keep what the base knew (see README, "Fine-tuning")
SCRATCH_DEFAULTS = {"lr": 1e-3, "val_fraction": 0.2}
FINETUNE_DEFAULTS = {"lr": 3e-4, "val_fraction": 0.25}


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
    lr: float | None = None  # None: 1e-3, fine-tuning 3e-4
    val_fraction: float | None = None  # None: 0.2, fine-tuning 0.25 (a block of each area)
    freeze_encoder: bool = False
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CPUs with native bf16, else fp32
    seed: int = 0
    resume: bool = False
    checkpoint: bool = False  # also write the best epoch (marked partial) as training goes
    scale_jitter: float = 0.0  # crops resampled by a random factor in [1/(1+j), 1+j]
    pixel_size: float | None = None  # train at this pixel size (m); None: the base's
    replay_share: float = 0.5  # fine-tuning: share of each batch from the base's replay set
    keep_finetuned: bool = False  # fine-tuning: keep the new weights even when not better
    command: str = field(default_factory=lambda: " ".join(sys.argv))

    @property
    def fine_tuning(self) -> bool:
        return self.base is not None

    def resolved(self) -> TrainConfig:
        """This config with the settings left None filled in for scratch or fine-tuning."""
        defaults = FINETUNE_DEFAULTS if self.fine_tuning else SCRATCH_DEFAULTS
        return replace(self, lr=defaults["lr"] if self.lr is None else self.lr,
                       val_fraction=(defaults["val_fraction"] if self.val_fraction is None
                                     else self.val_fraction))
