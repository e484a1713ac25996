"""How many steps a run takes (no torch here).

Training from scratch: an epoch is one pass over the labelled pixels, at least
`MIN_STEPS_PER_EPOCH` batches. Fine-tuning: the whole run sees the user's labelled pixels
about `passes` times (`FINETUNE_PASSES` on data the base knows well, more on data it does
not: config.Familiarity), however many epochs it is split into, so a few tiles are not
memorised (30 epochs of 16 batches of 256 px crops were ~160 passes over 8 tiles).
"""

from __future__ import annotations

import math

MIN_STEPS_PER_EPOCH = 16  # a few small tiles would otherwise make an epoch 1-2 steps long
FINETUNE_PASSES = 20


def steps_per_epoch(train_pixels: int, crop: int, batch: int, epochs: int,
                    user_crops: int | None = None, passes: float = FINETUNE_PASSES) -> int:
    """Steps in each epoch; `user_crops` (crops of the user's data in each batch) is given
    when fine-tuning."""
    epoch_steps = max(MIN_STEPS_PER_EPOCH, math.ceil(train_pixels / crop ** 2 / batch))
    if user_crops is None:
        return epoch_steps
    budget = math.ceil(passes * train_pixels / (crop ** 2 * user_crops))
    return max(1, min(epoch_steps, math.ceil(budget / epochs)))
