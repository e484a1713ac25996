"""Build, load and save torch networks described by a bundle (imports torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from farmseg.errors import ModelError
from farmseg.models.pretrained import load_pretrained, load_strict

# User-facing names -> smp names. The bundle stores the smp names.
ARCHITECTURES = {"unet": "Unet", "deeplabv3plus": "DeepLabV3Plus"}
ENCODERS = {
    "efficientnet-lite0": "tu-efficientnet_lite0",
    "efficientnet-lite1": "tu-efficientnet_lite1",
    "efficientnet-lite2": "tu-efficientnet_lite2",
    "efficientnet-b4": "efficientnet-b4",
    "resnet50": "resnet50",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "mobilenet_v2": "mobilenet_v2",
}


def smp_arch(name: str) -> str:
    """Accept a user-facing or smp architecture name; return the smp name."""
    if name in ARCHITECTURES.values():
        return name
    try:
        return ARCHITECTURES[name.lower()]
    except KeyError:
        raise ModelError(None, f"unknown architecture '{name}' (choose from "
                         f"{', '.join(ARCHITECTURES)})") from None


def smp_encoder(name: str) -> str:
    """Accept a user-facing or smp encoder name; return the smp name."""
    if name in ENCODERS.values():
        return name
    try:
        return ENCODERS[name.lower()]
    except KeyError:
        raise ModelError(None, f"unknown encoder '{name}' (choose from "
                         f"{', '.join(ENCODERS)})") from None


def build_network(arch: str, encoder: str, in_channels: int, classes: int) -> torch.nn.Module:
    """A fresh network, without downloading anything."""
    return smp.create_model(smp_arch(arch), encoder_name=smp_encoder(encoder),
                            encoder_weights=None, in_channels=in_channels, classes=classes)


def load_imagenet_encoder(model: torch.nn.Module, encoder: str) -> bool:
    """Load the offline pretrained weights registered for this network (ImageNet or other,
    see `pretrained.PRETRAINED`), strictly. Returns whether weights were loaded."""
    return load_pretrained(model, type(model).__name__, smp_encoder(encoder)) is not None


def network_from_bundle(meta: dict[str, Any], weights: Path) -> torch.nn.Module:
    """Rebuild the network from bundle metadata and load its safetensors strictly."""
    model = build_network(meta["arch"], meta["encoder"], len(meta["input"]["bands"]),
                          len(meta["classes"]))
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(weights, f"corrupt or unreadable weights ({exc})") from None
    load_strict(model, state, weights, f"{meta['arch']}/{meta['encoder']}")
    return model.eval()


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write weights as safetensors; floating tensors in float16 to halve the bundle size."""
    state = {k: (v.detach().cpu().half() if v.is_floating_point()
                 else v.detach().cpu()).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(path))
