"""Training on corrections: fields + reviewed areas; only reviewed pixels count (loss and
validation block); the `reviewed` layer of a GeoPackage; corrections exported as a folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import CRS
from rasterio import features
from rasterio.transform import from_origin

from farmseg.cli import main
from farmseg.editing.layer import EditableLayer, from_field_layer
from farmseg.editing.store import REVIEWED_LAYER, read_layer, save_layer
from farmseg.errors import UsageError
from farmseg.fields.clean import FieldLayer
from farmseg.geoio.vectors import read_polygons, reproject
from farmseg.training.blocks import split_blocks
from farmseg.training.corrections import find_reviewed, write_corrections_folder
from farmseg.training.crops import CropSampler
from farmseg.training.samples import Sample, find_labeled_pairs, load_sample
from tests.conftest import SHARED, write_crop

W, H = 256, 192


def _name() -> str:
    return sorted(p.stem for p in (SHARED / "images").glob("*.tif"))[0]


def _reviewed_shape(image: Path) -> shapely.Geometry:
    """An L of the image's west half: its northern half whole, its south-west quarter."""
    with rasterio.open(image) as src:
        t = src.transform
    north = shapely.box(*(t * (0, H // 2)), *(t * (W // 2, 0)))
    south_west = shapely.box(*(t * (0, H)), *(t * (W // 4, H // 2)))
    return shapely.union(north, south_west)


def _write_areas(areas: shapely.Geometry, path: Path, crs: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pyogrio.raw.write(path, geometry=shapely.to_wkb(shapely.get_parts(areas)), field_data=[],
                      fields=[], crs=crs, driver="GPKG", geometry_type="Polygon",
                      layer=REVIEWED_LAYER)
    return path


@pytest.fixture
def corrections_dir(tmp_path: Path) -> Path:
    """images/ + fields/ + reviewed/: a real crop, its fields, an L-shaped reviewed area."""
    name, data = _name(), tmp_path / "data"
    image = write_crop(SHARED / "images" / f"{name}.tif", data / "images" / f"{name}.tif",
                       200, 300, W, H)
    (data / "fields").mkdir()
    shutil.copy(SHARED / "fields" / f"{name}.geojson", data / "fields" / f"{name}.geojson")
    with rasterio.open(image) as src:
        crs = src.crs.to_wkt()
    _write_areas(_reviewed_shape(image), data / "reviewed" / f"{name}.gpkg", crs)
    return data


def _inside(sample: Sample, areas: shapely.Geometry) -> np.ndarray:
    """Which of the sample's pixel centres lie in `areas`."""
    return features.rasterize([(areas, 1)], out_shape=sample.shape, transform=sample.transform,
                              fill=0, dtype="uint8") > 0


def test_pixels_outside_the_reviewed_areas_do_not_count(corrections_dir):
    torch = pytest.importorskip("torch")
    from farmseg.training.losses import segmentation_loss

    (image, label), = find_labeled_pairs(corrections_dir)
    sample = load_sample(image, label)
    areas = _reviewed_shape(image)
    # the sample is the reviewed areas' extent; its valid pixels are exactly the reviewed ones
    assert sample.shape == (H, W // 2) and sample.name == image.stem
    assert np.array_equal(sample.valid, _inside(sample, areas)) and not sample.valid.all()
    assert sample.mask[sample.valid].any()
    # crops mark the other pixels -100, which the loss ignores whatever the network says there
    sampler = CropSampler([sample], 64, {"method": "fixed", "low": [0.0] * 3,
                                         "high": [255.0] * 3}, seed=1)
    images, masks = sampler.crops(8)
    target = torch.from_numpy(np.stack(masks).copy())
    assert (target == -100).any() and (target >= 0).any()
    logits = torch.randn(8, 3, 64, 64)
    changed = torch.where((target == -100).unsqueeze(1), torch.randn(8, 3, 64, 64) * 9, logits)
    weights = torch.ones(3)
    assert torch.allclose(segmentation_loss(logits, target, weights),
                          segmentation_loss(changed, target, weights))


def test_the_validation_block_lies_inside_the_reviewed_areas(corrections_dir):
    (image, label), = find_labeled_pairs(corrections_dir)
    sample = load_sample(image, label)
    train, val = split_blocks([sample], 0.25)
    assert len(val) == 1 and val[0].valid.sum() > 0
    block = val[0]
    assert np.array_equal(block.valid, _inside(block, _reviewed_shape(image)) & block.valid)
    assert not (_inside(block, _reviewed_shape(image)) & ~block.valid).any()
    assert sum(int(p.valid.sum()) for p in train + val) == int(sample.valid.sum())


def test_a_tile_whose_block_holds_no_reviewed_pixel_trains_whole():
    valid = np.zeros((64, 128), bool)
    valid[:, :64] = True  # the block is the eastern quarter: nothing reviewed there
    tile = Sample("t", np.zeros((3, 64, 128), np.uint8), np.ones((64, 128), np.uint8), valid,
                  "uint8", 1.0, [], from_origin(0, 64, 1, 1))
    train, val = split_blocks([tile], 0.25)
    assert val == [] and [p.shape for p in train] == [(64, 128)]


def test_a_folder_of_corrections_trains_and_validates_on_reviewed_pixels(tmp_path,
                                                                         corrections_dir):
    pytest.importorskip("torch")
    out = tmp_path / "tuned"
    assert main(["train", "--data", str(corrections_dir), "--base", "default", "--out",
                 str(out), "--epochs", "1", "--tile", "64", "--batch", "4", "--keep-finetuned",
                 "-q"]) == 0
    record = json.loads((out / "farmseg.json").read_text())["finetune"]
    (image, label), = find_labeled_pairs(corrections_dir)
    _, val = split_blocks([load_sample(image, label)], 0.25)
    assert record["validation"]["pixels"] == int(val[0].valid.sum())
    assert record["kept"] == "fine-tuned"


def _corrected_layer(image: Path) -> EditableLayer:
    """The shared fields (WGS84) as an editable layer, the L-shaped area reviewed."""
    geoms, crs = read_polygons(SHARED / "fields" / f"{image.stem}.geojson")
    layer = from_field_layer(FieldLayer(geoms, {}, CRS.from_user_input(crs)))
    with rasterio.open(image) as src:
        areas = reproject(np.asarray([_reviewed_shape(image)]), src.crs.to_wkt(), crs)[0]
    return EditableLayer(layer.geoms, layer.columns, layer.crs, areas)


def test_a_geopackage_with_a_reviewed_layer_is_found(tmp_path, corrections_dir):
    (image, _), = find_labeled_pairs(corrections_dir)
    data = tmp_path / "gpkg"
    (data / "images").mkdir(parents=True)
    shutil.copy(image, data / "images" / image.name)
    (data / "fields").mkdir()
    saved = save_layer(_corrected_layer(image), data / "fields" / f"{image.stem}.gpkg")
    assert find_reviewed(data, image.stem) == (saved, REVIEWED_LAYER)
    (_, label), = find_labeled_pairs(data)
    sample = load_sample(data / "images" / image.name, label)
    assert sample.shape == (H, W // 2) and not sample.valid.all()


def test_exported_corrections_are_a_training_folder(tmp_path, corrections_dir):
    (image, _), = find_labeled_pairs(corrections_dir)
    whole = write_crop(SHARED / "images" / f"{image.stem}.tif", tmp_path / "whole.tif",
                       100, 200, 512, 400)
    layer = _corrected_layer(image)
    with pytest.raises(UsageError, match="reviewed"):
        write_corrections_folder(whole, EditableLayer(layer.geoms, layer.columns, layer.crs),
                                 tmp_path / "none")
    picture = write_corrections_folder(whole, layer, tmp_path / "export")
    (found, label), = find_labeled_pairs(tmp_path / "export")
    assert found == picture and label.suffix == ".gpkg"
    with rasterio.open(picture) as src, rasterio.open(image) as crop:
        assert src.shape == (H, W // 2) and src.crs == crop.crs
        assert src.transform.almost_equals(crop.transform)
    exported = load_sample(picture, label)
    assert exported.shape == (H, W // 2) and exported.valid.sum() == load_sample(
        image, find_labeled_pairs(corrections_dir)[0][1]).valid.sum()
    kept, _, _ = read_layer(label)
    assert 0 < len(kept) < len(layer)


def test_the_prue_loss_weighs_a_missed_boundary_above_a_missed_background_pixel():
    torch = pytest.importorskip("torch")
    from farmseg.training.losses import LOSSES

    target = torch.tensor([[[0, 1, 2, 1]]])  # background, field, boundary, field

    def loss_when_wrong_at(column: int, recipe: str) -> float:
        logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 6
        logits[0, :, 0, column] = torch.tensor([0.0, 6.0, 0.0])  # says field there
        return float(LOSSES[recipe](logits, target))

    def boundary_over_background(recipe: str) -> float:
        return loss_when_wrong_at(2, recipe) / loss_when_wrong_at(0, recipe)

    assert boundary_over_background("prue") > 2 * boundary_over_background("ce-dice")
