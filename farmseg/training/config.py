"""The settings of a training run (no torch here)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any

from farmseg.training.schedule import FINETUNE_PASSES

# defaults that differ between training from scratch and fine-tuning (--base): a fine-tune
# on a few tiles must keep what the base knew (see README, "Fine-tuning")
SCRATCH_DEFAULTS = {"lr": 1e-3, "val_fraction": 0.2, "replay_share": 0.0}
FINETUNE_DEFAULTS = {"val_fraction": 0.25}
# a fine-tune's strength follows how well the base knows the user's data (`Familiarity`):
# data it reads as well as its own validation images get FAMILIAR (keep what it knows), data
# it fails on get UNFAMILIAR (little of its knowledge applies there), linearly between
FAMILIAR = {"lr": 3e-4, "replay_share": 0.5, "passes": float(FINETUNE_PASSES)}
UNFAMILIAR = {"lr": 1e-3, "replay_share": 0.0, "passes": 2.0 * FINETUNE_PASSES}
ADAPTED = tuple(FAMILIAR)


@dataclass(frozen=True)
class Familiarity:
    """How well the base knows the user's data: its field F1 on the validation block over
    the field F1 it recorded on its own validation images."""

    block_f1: float
    own_f1: float

    @classmethod
    def of(cls, block_f1: float | None, base_meta: dict[str, Any]) -> Familiarity | None:
        """None when either F1 is unknown (no validation block, a base without metrics)."""
        own = (base_meta.get("metrics") or {}).get("val_field_f1")
        return None if block_f1 is None or not own else cls(block_f1, float(own))

    @property
    def ratio(self) -> float:
        """0 (knows nothing of the data) .. 1 (as good as on its own validation)."""
        return min(1.0, max(0.0, self.block_f1 / self.own_f1))

    def setting(self, name: str) -> float:
        """A FAMILIAR / UNFAMILIAR setting interpolated at this ratio."""
        return FAMILIAR[name] * self.ratio + UNFAMILIAR[name] * (1.0 - self.ratio)


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
    lr: float | None = None  # None: 1e-3, fine-tuning 3e-4 .. 1e-3 (Familiarity)
    val_fraction: float | None = None  # None: 0.2, fine-tuning 0.25 (a block of each area)
    freeze_encoder: bool = False
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CPUs with native bf16, else fp32
    seed: int = 0
    resume: bool = False
    checkpoint: bool = False  # also write the best epoch (marked partial) as training goes
    loss: str = "ce-dice"  # a recipe of training.losses.LOSSES
    scale_jitter: float = 0.0  # crops resampled by a random factor in [1/(1+j), 1+j]
    pixel_size: float | None = None  # train at this pixel size (m); None: the base's
    replay_share: float | None = None  # fine-tuning: share of each batch from the base's
    # replay set; None: 0.5 .. 0 (Familiarity)
    passes: float | None = None  # fine-tuning: passes over the user's labelled pixels;
    # None: 20 .. 40 (Familiarity)
    keep_finetuned: bool = False  # fine-tuning: keep the new weights even when not better
    command: str = field(default_factory=lambda: " ".join(sys.argv))

    @property
    def fine_tuning(self) -> bool:
        return self.base is not None

    def resolved(self, familiarity: Familiarity | None = None) -> TrainConfig:
        """This config with the settings left None filled in for scratch or fine-tuning; a
        fine-tune's lr, replay share and passes from `familiarity` (FAMILIAR without it)."""
        defaults: dict[str, float] = dict(SCRATCH_DEFAULTS)
        if self.fine_tuning:
            defaults = {**FINETUNE_DEFAULTS, **{name: familiarity.setting(name) if familiarity
                                                else FAMILIAR[name] for name in ADAPTED}}
        unset: dict[str, Any] = {name: value for name, value in defaults.items()
                                 if getattr(self, name) is None}
        return replace(self, **unset)

    def finetune_settings(self, familiarity: Familiarity | None) -> dict[str, Any]:
        """The bundle's record of this fine-tune's adapted settings (self as asked, before
        `resolved`) and why they were chosen."""
        chosen = self.resolved(familiarity)
        asked = [name for name in ADAPTED if getattr(self, name) is not None]
        why = ("the base's F1 on the validation block was not measured" if familiarity is None
               else f"the base scores {familiarity.block_f1:.3f} on the validation block, "
               f"{familiarity.ratio:.2f} of its own validation F1 ({familiarity.own_f1:.3f})")
        lr, share, passes = (float(getattr(chosen, name)) for name in ADAPTED)
        return {"lr": round(lr, 7), "replay_share": round(share, 4), "passes": round(passes, 2),
                "familiarity": round(familiarity.ratio, 4) if familiarity else None,
                "asked": asked,
                "reason": (f"{why}: lr {lr:.1e}, replay share {share:.2f}, {passes:.0f} passes "
                           "over the labelled pixels"
                           + (f" ({', '.join(asked)} as asked)" if asked else ""))}
