"""Fine-tuning keeps what the base knew: the validation block, the verdict that keeps the base
unless the fine-tune is better beyond the uncertainty, thresholds re-tuned and stored,
rehearsal crops read with their own scaling, a step budget scaled to the data, settings
chosen from how well the base knows the data."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import from_origin

from farmseg.cli import main
from farmseg.models.bundle import load_bundle
from farmseg.models.scaling import fixed_scaling
from farmseg.scoring.uncertainty import PairedF1
from farmseg.training.blocks import labelled_areas, split_blocks
from farmseg.training.config import Familiarity, TrainConfig
from farmseg.training.crops import CropSampler, RehearsalSampler
from farmseg.training.replay import load_replay_samples, padded, replay_scaling
from farmseg.training.samples import Sample
from farmseg.training.schedule import steps_per_epoch
from farmseg.training.verdict import ValidationFields, Verdict, tune_thresholds
from tests.conftest import SHARED

UTM = CRS.from_epsg(32615)


def _tile(x0: float, y0: float, h: int = 64, w: int = 64, dtype: str = "uint8",
          name: str = "t") -> Sample:
    """A labelled tile whose north-west corner is at (x0, y0), 1 m pixels."""
    mask = np.ones((h, w), np.uint8)
    image = np.random.default_rng(0).integers(0, 255, (3, h, w)).astype(dtype)
    return Sample(name, image, mask, np.ones((h, w), bool), dtype, 1.0, [f"{name}.tif"],
                  from_origin(x0, y0, 1.0, 1.0), UTM)


def _pixels(parts: list[Sample]) -> set[tuple[float, float]]:
    """World coordinates of every pixel centre of the parts."""
    out = set()
    for part in parts:
        h, w = part.shape
        for row in range(h):
            for col in range(w):
                x, y = part.transform * (col + 0.5, row + 0.5)
                out.add((round(x, 3), round(y, 3)))
    return out


def test_the_validation_block_is_disjoint_from_the_training_pixels():
    # two touching tiles stacked north-south (one tall area) and one tile far away
    tiles = [_tile(0, 128, name="n"), _tile(0, 64, name="s"), _tile(5000, 64, name="far")]
    assert sorted(map(sorted, labelled_areas(tiles))) == [[0, 1], [2]]
    train, val = split_blocks(tiles, 0.25)
    train_px, val_px = _pixels(train), _pixels(val)
    assert not train_px & val_px
    assert train_px | val_px == _pixels(tiles)
    # the tall area's block is its southern quarter (32 rows of the southern tile), the lone
    # tile's its eastern quarter: every area is validated
    assert {p.name: p.shape for p in val} == {"s[val]": (32, 64), "far[val]": (64, 16)}
    assert "n[val]" not in {p.name for p in val} and "n[train]" in {p.name for p in train}
    assert max(y for _, y in _pixels([v for v in val if v.name == "s[val]"])) < 32


def test_tiles_in_other_crs_are_other_areas():
    a, b = _tile(0, 64), _tile(64, 64)
    b.crs = CRS.from_epsg(32616)
    assert len(labelled_areas([a, b])) == 2


def _paired(low: float, high: float, gain: float = 0.05) -> PairedF1:
    return PairedF1(0.7, 0.7 + gain, (0.6, 0.8), (0.65, 0.85), (low, high), 40, 0.8)


def test_the_base_is_kept_unless_the_gain_is_beyond_the_uncertainty():
    thresholds = {"field_threshold": 0.5, "seed_threshold": 0.6, "boundary_threshold": 0.2}
    unsure = Verdict(_paired(-0.02, 0.12), 250_000, thresholds, 0.74)
    assert not unsure.is_better and unsure.kept == "base"
    assert "NOT better" in unsure.line() and "base model was kept" in unsure.line()
    assert "40 fields, 0.25 MPix" in unsure.line()
    sure = Verdict(_paired(0.01, 0.12), 250_000, thresholds, 0.74)
    assert sure.is_better and sure.kept == "fine-tuned" and "is better" in sure.line()
    forced = Verdict(_paired(-0.02, 0.12), 250_000, thresholds, 0.74, keep_finetuned=True)
    assert forced.kept == "fine-tuned" and "--keep-finetuned" in forced.line()
    record = unsure.section()
    assert record["validation"] == {"fields": 40, "pixels": 250_000, "blocks": []}
    assert record["verdict"] == "not better" and record["kept"] == "base"
    assert record["before"]["interval"] == [0.6, 0.8] and record["thresholds"] == thresholds


def _two_fields() -> tuple[Sample, np.ndarray]:
    """Two fields side by side and probabilities whose boundary between them is faint."""
    h, w = 60, 121
    instances = np.zeros((h, w), np.int32)
    instances[:, :60], instances[:, 61:] = 1, 2
    mask = np.where(instances > 0, 1, 2).astype(np.uint8)
    sample = Sample("s", np.zeros((3, h, w), np.uint8), mask, np.ones((h, w), bool), "uint8",
                    1.0, [], from_origin(500000, 4500000, 1.0, 1.0), UTM, instances)
    probs = np.zeros((3, h, w), np.float32)
    probs[1], probs[2] = 0.95, 0.05
    probs[:, :, 59:62] = np.array([0.05, 0.7, 0.25])[:, None, None]
    return sample, probs


def test_thresholds_are_re_tuned_on_the_validation(tmp_path):
    sample, probs = _two_fields()
    fields = ValidationFields([probs], [sample], tmp_path)
    start = {"field_threshold": 0.5, "seed_threshold": 0.5, "boundary_threshold": 0.5}
    assert fields.score(start).f1 == 0.0  # the faint boundary merges both fields
    tuned = tune_thresholds(fields, start)
    assert tuned["boundary_threshold"] < 0.25 and fields.score(tuned).f1 == 1.0


def test_rehearsal_crops_are_read_with_their_own_scaling():
    user = [_tile(0, 64, dtype="uint16")]
    user[0].image[:] = 4000
    replay = [padded(s, 256) for s in load_replay_samples(load_bundle("default").path)[:2]]
    assert replay[0].shape == (256, 256) and not replay[0].valid.all()
    user_scaling = fixed_scaling([0.0] * 3, [8000.0] * 3)
    sampler = RehearsalSampler(CropSampler(user, 64, user_scaling, 0),
                               CropSampler(replay, 64, replay_scaling(load_bundle("default").meta),
                                           1), 0.5)
    assert sampler.replay_count(8) == 4 and sampler.replay_count(1) == 0
    images, masks = sampler.user.crops(2)
    assert all(0.3 < float(i.mean()) < 0.7 for i in images)  # 4000 of 0..8000, jittered
    batch, masks = sampler.batch(8)
    assert batch.shape == (8, 3, 64, 64) and masks.shape == (8, 64, 64)
    assert np.abs(batch).max() < 10  # uint8 replay pixels were not read as uint16 ones


def test_fine_tuning_steps_are_scaled_to_the_labelled_pixels():
    pixels = 8 * 512 * 512 * 3 // 4
    assert steps_per_epoch(pixels, 256, 8, 30) == 16  # from scratch: at least 16 a epoch
    tuned = steps_per_epoch(pixels, 256, 8, 30, user_crops=4)
    assert tuned * 30 * 4 * 256 ** 2 <= 21 * pixels  # about 20 passes over the user's pixels
    assert steps_per_epoch(10_000, 256, 8, 30, user_crops=4) == 1
    assert steps_per_epoch(pixels, 256, 8, 30, user_crops=4, passes=40) == 2 * tuned


def test_fine_tuning_defaults_differ_only_with_a_base():
    scratch = TrainConfig(data="d", out="o").resolved()
    tuned = TrainConfig(data="d", out="o", base="default").resolved()
    assert (scratch.lr, scratch.val_fraction) == (1e-3, 0.2)
    assert (tuned.lr, tuned.val_fraction, tuned.replay_share, tuned.passes) == (3e-4, 0.25,
                                                                                 0.5, 20)
    assert (scratch.replay_share, scratch.passes) == (0.0, None)
    assert TrainConfig(data="d", out="o", base="default", lr=1e-3).resolved().lr == 1e-3


def test_a_base_that_knows_little_of_the_data_rehearses_less_and_learns_faster():
    meta = {"metrics": {"val_field_f1": 0.75}}
    familiar, strange = Familiarity.of(0.75, meta), Familiarity.of(0.3, meta)
    assert familiar is not None and strange is not None and strange.ratio == pytest.approx(0.4)
    assert Familiarity.of(None, meta) is None and Familiarity.of(0.5, {}) is None
    asked = TrainConfig(data="d", out="o", base="default")
    own = asked.resolved(familiar)
    assert (own.lr, own.replay_share, own.passes) == (3e-4, 0.5, 20)  # as without a measure
    new = asked.resolved(strange)
    assert new.replay_share == pytest.approx(0.2) and new.lr == pytest.approx(7.2e-4)
    assert new.passes == pytest.approx(32)
    assert asked.resolved(Familiarity(0.9, 0.75)).replay_share == 0.5  # clipped at 1
    record = asked.finetune_settings(strange)
    assert record["familiarity"] == 0.4 and record["asked"] == []
    assert "0.40 of its own validation F1" in record["reason"]
    chosen = TrainConfig(data="d", out="o", base="default", replay_share=0.5, lr=1e-4)
    assert (chosen.resolved(strange).replay_share, chosen.resolved(strange).lr) == (0.5, 1e-4)
    assert chosen.finetune_settings(strange)["asked"] == ["lr", "replay_share"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def two_tiles(labeled_dir: Path) -> Path:
    for sub in ("images", "masks"):
        sorted((labeled_dir / sub).iterdir())[-1].unlink()
    return labeled_dir


def test_a_tiny_fine_tune_that_is_not_better_keeps_the_base(tmp_path, two_tiles, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "tuned"
    assert main(["train", "--data", str(two_tiles), "--base", "default", "--out", str(out),
                 "--epochs", "1", "--tile", "64", "--batch", "4", "-q"]) == 0
    text = capsys.readouterr().out
    meta = json.loads((out / "farmseg.json").read_text())
    record = meta["finetune"]
    assert record["verdict"] == "not better" and record["kept"] == "base"
    assert "NOT better" in text and "base model was kept" in text
    base = load_bundle("default")
    for name in ("model.safetensors", "model.onnx", "replay.npz"):
        assert _digest(out / name) == _digest(base.path / name)
    assert meta["postprocess"] == base.thresholds and meta["name"] == "tuned"
    assert record["validation"]["pixels"] > 0 and load_bundle(out).has_onnx
    assert "fine-tuning settings: the base scores" in text and record["settings"]["passes"] >= 20


def test_kept_fine_tuned_weights_store_the_re_tuned_thresholds(tmp_path, two_tiles):
    pytest.importorskip("torch")
    from farmseg.jobs import run_job
    from farmseg.training.trainer import train_job

    out = tmp_path / "tuned"
    result = run_job(train_job(TrainConfig(data=str(two_tiles), out=str(out), base="default",
                                           epochs=1, tile=64, batch=4, keep_finetuned=True)))
    meta = json.loads((out / "farmseg.json").read_text())
    assert meta["finetune"]["kept"] == "fine-tuned" and result["finetune"] == meta["finetune"]
    assert meta["postprocess"] == meta["finetune"]["thresholds"]
    assert (out / "replay.npz").is_file() and meta["replay"]["scaling"]["method"] == "fixed"
    assert _digest(out / "model.safetensors") != _digest(load_bundle("default").weights_path)


@pytest.mark.parametrize("pixel_size", [None, 2.0])
def test_a_replay_set_is_made_at_the_model_pixel_size(labeled_dir, tmp_path, pixel_size):
    """The rehearsal crops of a model for coarse pixels are crops of its training images at
    its own pixel size (1 m crops shrunk to 10 m would be a few pixels of context)."""
    from farmseg.training.replay import build_replay_set

    names = sorted(p.stem for p in (labeled_dir / "images").glob("*.tif"))
    shutil.copyfile(SHARED.parent / "LICENSE", labeled_dir.parent / "LICENSE")
    (tmp_path / "bundle").mkdir()
    build_replay_set(labeled_dir, names, tmp_path / "bundle", pixel_size=pixel_size)
    samples = load_replay_samples(tmp_path / "bundle")
    side = 160 if pixel_size is None else 80  # the 160 x 192 px crops; halved at 2 m
    assert {s.shape for s in samples} == {(side, side)}
    assert {s.pixel_size for s in samples} == {pixel_size or 1.0}
    assert all(set(np.unique(s.mask)) <= {0, 1, 2} for s in samples)
    assert (tmp_path / "bundle" / "replay-LICENSE.txt").read_text().startswith("The crops")
