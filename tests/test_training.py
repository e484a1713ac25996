"""Training and fine-tuning from the CLI on tiny real crops; label checks; cancel."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio

from farmseg.cli import main
from farmseg.errors import Cancelled, InputError
from farmseg.jobs import run_job
from farmseg.models.bundle import load_bundle
from tests.conftest import SHARED, write_crop

pytest.importorskip("torch")


def test_fine_tune_from_the_cli_prints_before_and_after(tmp_path, labeled_dir, capsys,
                                                         sample_crop):
    out = tmp_path / "tuned"
    assert main(["train", "--data", str(labeled_dir), "--base", "default", "--out", str(out),
                 "--epochs", "1", "--tile", "64", "--batch", "4", "--keep-finetuned",
                 "-q"]) == 0
    text = capsys.readouterr().out
    assert "base default" in text and "fine-tuned" in text and "field F1" in text
    epoch_line = next(line for line in text.splitlines() if line.startswith("epoch 1:"))
    assert "val field IoU" in epoch_line and "field F1" in epoch_line
    meta = json.loads((out / "farmseg.json").read_text())
    assert meta["training"]["base"] == "default" and meta["partial"] is False
    metrics, record = meta["metrics"], meta["finetune"]
    # a fine-tune keeps its last epoch: no selection score
    assert metrics["val_selection_score"] is None
    assert set(metrics) == {"val_selection_score", "val_pixel_iou", "val_field_f1",
                            "base_val_pixel_iou", "base_val_field_f1"}
    assert metrics["val_field_f1"] == pytest.approx(record["after"]["field_f1"], abs=1e-4)
    assert metrics["base_val_field_f1"] == pytest.approx(record["before"]["field_f1"], abs=1e-4)
    assert record["kept"] == "fine-tuned" and "--keep-finetuned" in text
    tuned_line = next(line for line in text.splitlines() if line.startswith("  fine-tuned"))
    assert [float(v) for v in tuned_line.split()[1:]] == pytest.approx(
        [metrics["val_pixel_iou"], metrics["val_field_f1"]], abs=6e-4)
    # the base's reduced-precision verdicts and validation figures are not inherited
    assert "precision" not in meta and "val_field_f1_threshold_only" not in meta["metrics"]
    assert len(meta["training"]["files"]) == 6
    fields = tmp_path / "f.gpkg"
    assert main(["segment", str(sample_crop), "-o", str(fields), "--model", str(out), "-q"]) == 0
    assert pyogrio.read_info(fields)["features"] >= 0


def test_resuming_a_run_continues_from_its_bundle_and_reports_where_it_began(
        tmp_path, labeled_dir, capsys):
    out = tmp_path / "model"
    common = ["train", "--data", str(labeled_dir), "--out", str(out), "--arch", "unet",
              "--encoder", "mobilenet_v2", "--epochs", "1", "--tile", "64", "--batch", "4",
              "--val-fraction", "0.3", "-q"]
    assert main(common) == 0
    first = json.loads((out / "farmseg.json").read_text())
    capsys.readouterr()
    assert main([*common, "--resume"]) == 0
    text = capsys.readouterr().out
    start = next(line for line in text.splitlines() if line.startswith("  base "))
    assert start.split()[1:3] == ["model", "(resumed)"]
    # where the resume began: the first run's figures, scored again
    assert float(start.split()[-1]) == pytest.approx(first["metrics"]["val_field_f1"],
                                                     abs=6e-4)
    meta = json.loads((out / "farmseg.json").read_text())
    assert meta["partial"] is False and meta["training"]["base"] == "model"


def test_later_stages_hold_out_the_images_the_first_validated_on_whatever_the_seed(tmp_path):
    from farmseg.training.samples import find_labeled_pairs, load_sample, split_validation

    names = sorted(p.stem for p in (SHARED / "images").glob("*.tif"))[:5]
    data = tmp_path / "data"
    for name in names:
        for sub in ("images", "masks"):
            write_crop(SHARED / sub / f"{name}.tif", data / sub / f"{name}.tif", 0, 0, 96, 96)
    samples = [load_sample(*pair) for pair in find_labeled_pairs(data)]
    held_out = [s.name for s in split_validation(samples, 0.2, 0)[1]]
    other_seed = next(seed for seed in range(1, 50)
                      if [s.name for s in split_validation(samples, 0.2, seed)[1]] != held_out)
    out = tmp_path / "model"
    common = ["train", "--data", str(data), "--out", str(out), "--arch", "unet",
              "--encoder", "mobilenet_v2", "--epochs", "1", "--tile", "64", "--batch", "2",
              "--val-fraction", "0.2", "-q"]
    assert main([*common, "--seed", "0"]) == 0
    assert json.loads((out / "farmseg.json").read_text())["training"]["validation"] == held_out
    assert main([*common, "--seed", str(other_seed), "--resume"]) == 0
    assert json.loads((out / "farmseg.json").read_text())["training"]["validation"] == held_out
    # a stage from it as --base (fine-tuning would validate on a block of every image)
    tuned = tmp_path / "tuned"
    assert main([*common[:4], str(tuned), "--base", str(out), "--epochs", "1", "--tile", "64",
                 "--batch", "2", "--keep-finetuned", "-q"]) == 0
    assert json.loads((tuned / "farmseg.json").read_text())["training"]["validation"] == held_out


def test_training_without_validation_claims_no_validation_figures(tmp_path, labeled_dir):
    from farmseg.training.trainer import TrainConfig, train_job

    out = tmp_path / "unvalidated"
    result = run_job(train_job(TrainConfig(data=str(labeled_dir), out=str(out), base="default",
                                           epochs=1, tile=64, batch=4, val_fraction=0)))
    assert result["validation"] == [] and len(result["history"]) == 1
    assert result["val_field_iou"] is None and result["val_field_f1"] is None
    assert result["base_val_field_iou"] is None
    assert json.loads((out / "farmseg.json").read_text())["metrics"] == {
        "val_selection_score": None}


def test_train_from_scratch_on_polygon_labels(tmp_path, monkeypatch):
    names = sorted(p.stem for p in (SHARED / "images").glob("*.tif"))[:2]
    data = tmp_path / "data"
    for name in names:
        write_crop(SHARED / "images" / f"{name}.tif", data / "images" / f"{name}.tif",
                   0, 0, 160, 160)
        shutil.copy(SHARED / "fields" / f"{name}.geojson", data / "fields" / f"{name}.geojson"
                    if (data / "fields").is_dir() else _mkdir(data / "fields") / f"{name}.geojson")
    out = tmp_path / "scratch"
    assert main(["train", "--data", str(data), "--out", str(out), "--arch", "unet",
                 "--encoder", "mobilenet_v2", "--epochs", "1", "--tile", "64", "--batch", "2",
                 "-q"]) == 0
    bundle = load_bundle(out)
    assert bundle.encoder == "mobilenet_v2" and bundle.has_onnx


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_cancel_writes_the_best_epoch_as_a_partial_bundle(tmp_path, labeled_dir, monkeypatch):
    from farmseg.training.trainer import TrainConfig, train_job

    scratch = _mkdir(tmp_path / "scratch")  # validation images and their scores go here
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "models" / "cancelled"
    config = TrainConfig(data=str(labeled_dir), out=str(out), base="default", epochs=5,
                         tile=64, batch=4)
    epochs = []
    with pytest.raises(Cancelled):
        run_job(train_job(config), lambda p: epochs.append(p) if p.stage == "epoch" else None,
                lambda: len(epochs) >= 1)
    assert json.loads((out / "farmseg.json").read_text())["partial"] is True
    assert load_bundle(out).has_onnx
    assert [p.name for p in out.parent.iterdir()] == ["cancelled"]
    assert list(scratch.iterdir()) == []


def test_cancel_before_any_epoch_leaves_no_bundle(tmp_path, labeled_dir):
    from farmseg.training.trainer import TrainConfig, train_job

    models = _mkdir(tmp_path / "models")
    config = TrainConfig(data=str(labeled_dir), out=str(models / "none"), base="default",
                         epochs=2, tile=64, batch=4)
    steps = []
    with pytest.raises(Cancelled):
        run_job(train_job(config), steps.append, lambda: len(steps) >= 1)
    assert list(models.iterdir()) == []


# ---- label checks: a clear message naming the file, nothing starts ----------------------

def _break(labeled_dir: Path, what: str) -> Path:
    mask = sorted((labeled_dir / "masks").iterdir())[0]
    image = labeled_dir / "images" / mask.name
    with rasterio.open(mask, "r+") as ds:
        data = ds.read()
        if what == "empty":
            ds.write(np.zeros_like(data))
        elif what == "classes":
            data[0, 0, :10] = 7
            ds.write(data)
        elif what == "grid":
            ds.transform = ds.transform * rasterio.Affine.translation(5, 0)
    if what == "nan":
        write_crop(image, image.with_suffix(".tmp.tif"), 0, 0, 192, 160, dtype="float32")
        with rasterio.open(image.with_suffix(".tmp.tif"), "r+") as ds:
            data = ds.read()
            data[:, 5, 5] = np.nan
            ds.write(data)
        image.with_suffix(".tmp.tif").replace(image)
        return image
    if what == "small":
        write_crop(image, image.with_suffix(".tmp.tif"), 0, 0, 20, 20)
        image.with_suffix(".tmp.tif").replace(image)
        return image
    if what == "missing":
        mask.unlink()
        return image
    return mask


@pytest.mark.parametrize("case,message", [
    ("empty", "empty mask"), ("classes", "found [0, 1, 2, 7]"), ("grid", "differs from its image"),
    ("nan", "NaN pixels"), ("small", "minimum crop"), ("missing", "has no label")])
def test_bad_labels_are_refused_before_training(tmp_path, labeled_dir, capsys, case, message):
    broken = _break(labeled_dir, case)
    code = main(["train", "--data", str(labeled_dir), "--base", "default", "--out",
                 str(tmp_path / "m"), "--epochs", "1", "-q"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and str(broken) in line and message in line
    assert not (tmp_path / "m").exists()


def test_label_folder_without_images(tmp_path):
    from farmseg.training.samples import find_labeled_pairs

    with pytest.raises(InputError, match="no images/ folder"):
        find_labeled_pairs(tmp_path)


def test_polygons_over_part_of_an_image_train_only_that_part(tmp_path):
    import shapely

    from farmseg.geoio.vectors import read_polygons
    from farmseg.training.prepare import folder_from_polygons_over_image
    from farmseg.training.samples import find_labeled_pairs, load_sample
    from tests.conftest import SAMPLE, SAMPLE_FIELDS

    geoms, crs = read_polygons(SAMPLE_FIELDS)
    part = tmp_path / "corrected.geojson"
    chosen = geoms[:3]
    pyogrio.raw.write(part, shapely.to_wkb(chosen), [], [], crs="EPSG:4326", driver="GeoJSON",
                      geometry_type="Polygon")
    folder = folder_from_polygons_over_image(SAMPLE, part, tmp_path / "data")
    (image, label), = find_labeled_pairs(folder)
    sample = load_sample(image, label)
    assert sample.shape[0] < 1024 and sample.shape[1] < 1024
    assert (sample.mask > 0).mean() > 0.3


def test_loose_files_become_a_training_folder(tmp_path, labeled_dir):
    from farmseg.training.prepare import folder_from_files
    from farmseg.training.samples import find_labeled_pairs

    files = []
    for image in sorted((labeled_dir / "images").iterdir()):
        mask = tmp_path / "picked" / f"{image.stem}_mask.tif"
        mask.parent.mkdir(exist_ok=True)
        shutil.copy(labeled_dir / "masks" / image.name, mask)
        files += [image, mask]
    folder = folder_from_files(files, tmp_path / "data2")
    assert len(find_labeled_pairs(folder)) == 3


def test_scale_jitter_keeps_labels_aligned_and_ignored_pixels_ignored(labeled_dir):
    from farmseg.training.crops import CropSampler, choose_scaling
    from farmseg.training.samples import find_labeled_pairs, load_sample

    sample = load_sample(*find_labeled_pairs(labeled_dir)[0])
    sample.valid[:, :40] = False  # a nodata strip on the left
    # an image that equals its label: any misalignment of the resampled pair shows
    sample.image[:] = (sample.mask * 100).astype(sample.image.dtype)[None]
    sampler = CropSampler([sample], 96, choose_scaling([sample], None), seed=1,
                          scale_jitter=0.5)
    sizes = set()
    for _ in range(12):
        image, mask = sampler.resampled_crop(sample)
        assert image.shape == (3, 96, 96) and mask.shape == (96, 96)
        known = mask >= 0
        assert set(np.unique(mask)) <= {-100, 0, 1, 2}
        agree = np.round(image[0][known] / 100) == mask[known]
        assert agree.mean() > 0.95  # only resampling edges may differ
        sizes.add(int(np.count_nonzero(mask == -100)))
    assert len(sizes) > 3  # crops were taken at several scales and places


def test_validation_counts_the_labelled_fields_not_mask_fragments(tmp_path):
    """Fields whose interior the boundary band cuts apart stay one reference field."""
    from farmseg.training.samples import find_labeled_pairs, load_sample
    from farmseg.training.scoring import score_samples

    name = "40.367546--89.955944.tif"  # 13 fields; the mask's interiors make 16 pieces
    for sub in ("images", "masks", "instances"):
        _mkdir(tmp_path / sub)
        shutil.copy(SHARED / sub / name, tmp_path / sub / name)
    sample = load_sample(*find_labeled_pairs(tmp_path)[0])
    with rasterio.open(SHARED / "instances" / name) as src:
        assert np.array_equal(sample.instances, src.read(1))
    one_hot = np.stack([sample.mask == k for k in range(3)]).astype(np.float32)
    score = score_samples([one_hot], [sample], {"field_threshold": 0.5,
                                                "seed_threshold": 0.5,
                                                "boundary_threshold": 0.5})
    assert score.reference == 13
    assert score.recall > 0.8


def test_a_model_trained_at_2_m_resamples_1_m_rasters(tmp_path, labeled_dir, sample_crop,
                                                      capsys):
    out = tmp_path / "coarse"
    assert main(["train", "--data", str(labeled_dir), "--base", "default", "--out", str(out),
                 "--pixel-size", "2", "--epochs", "1", "--tile", "64", "--batch", "4",
                 "--keep-finetuned", "-q"]) == 0
    assert load_bundle(out).pixel_size_m == 2.0
    capsys.readouterr()
    probs = tmp_path / "p.tif"
    assert main(["segment", str(sample_crop), "-o", str(tmp_path / "f.gpkg"), "--prob",
                 str(probs), "--model", str(out), "-q"]) == 0
    assert main(["info", str(sample_crop), "--model", str(out)]) == 0
    assert "1.00 m pixels, model 'coarse' was trained on 2 m" in capsys.readouterr().out
    with rasterio.open(probs) as src, rasterio.open(sample_crop) as image:
        assert (src.width, src.height, src.transform) == (image.width, image.height,
                                                          image.transform)


def test_resampled_sample_keeps_its_fields_and_footprint(labeled_dir):
    from farmseg.training.labels import boundary_from_instances
    from farmseg.training.samples import load_sample, resampled

    name = next((labeled_dir / "images").iterdir()).name
    shutil.copytree(labeled_dir, labeled_dir.parent / "with_instances")
    data = labeled_dir.parent / "with_instances"
    write_crop(SHARED / "instances" / name, data / "instances" / name, 200, 300, 192, 160)
    sample = load_sample(data / "images" / name, data / "masks" / name)
    coarse = resampled(sample, 2.0)
    assert coarse.shape == (80, 96) and coarse.pixel_size == 2.0
    assert coarse.transform.a == 2 * sample.transform.a
    assert (coarse.transform.c, coarse.transform.f) == (sample.transform.c, sample.transform.f)
    big = [i for i, n in zip(*np.unique(sample.instances, return_counts=True)) if n > 400 and i]
    assert set(big) <= set(np.unique(coarse.instances))
    assert np.array_equal(coarse.mask, boundary_from_instances(coarse.instances))
    assert abs(coarse.image.mean() - sample.image.mean()) < 2


def test_fine_tuning_keeps_the_base_models_pixel_size(tmp_path, labeled_dir):
    """Tiles at 2 m fine-tune the 1 m default at 1 m (they are resampled), so the tuned
    model still reads any imagery the way the base does."""
    from farmseg.training.trainer import TrainConfig, train_job

    for path in labeled_dir.glob("*/*.tif"):  # the same pixels, declared 2 m
        with rasterio.open(path, "r+") as ds:
            ds.transform = ds.transform * ds.transform.scale(2, 2)
    out = tmp_path / "tuned"
    run_job(train_job(TrainConfig(data=str(labeled_dir), out=str(out), base="default",
                                  epochs=1, tile=64, batch=4)))
    assert load_bundle(out).pixel_size_m == 1.0
