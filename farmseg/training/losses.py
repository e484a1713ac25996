"""Training losses: class-weighted cross entropy plus a Dice term, in two recipes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossRecipe:
    """Cross-entropy weights of background, field, boundary, and the form of the Dice term."""

    class_weights: tuple[float, float, float]
    log_cosh_dice: bool

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """This recipe's loss of `logits` (N, 3, H, W) against `target` (N, H, W)."""
        weights = torch.tensor(self.class_weights, device=logits.device)
        return segmentation_loss(logits, target, weights, self.log_cosh_dice)


LOSSES = {
    # boundary pixels are rare (about 4 %): weighted 3x
    "ce-dice": LossRecipe((1.0, 1.0, 3.0), log_cosh_dice=False),
    # PRUE (CVPR 2026, Fields of The World): boundary-heavy weights and log-cosh Dice
    "prue": LossRecipe((0.05, 0.2, 0.75), log_cosh_dice=True),
}


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                      log_cosh_dice: bool = False) -> torch.Tensor:
    """Class-weighted cross entropy plus soft Dice over the three classes (log-cosh of it
    when asked); target pixels of -100 are ignored."""
    ce = F.cross_entropy(logits, target, weight=weights, ignore_index=-100)
    probs = torch.softmax(logits, dim=1)
    valid = (target >= 0).unsqueeze(1)
    onehot = F.one_hot(target.clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2)
    onehot = onehot * valid
    probs = probs * valid
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = 1 - ((2 * inter + 1) / (denom + 1)).mean()
    return ce + (torch.log(torch.cosh(dice)) if log_cosh_dice else dice)
