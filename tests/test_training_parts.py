"""The training loop's parts alone: bundle metadata, metric names, the best-epoch record,
epoch reports, validation images through the pipeline's tiled inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import from_origin

from farmseg.errors import InputError
from farmseg.models.bundle import load_bundle
from farmseg.training.config import TrainConfig
from farmseg.training.metadata import (
    Figures,
    bundle_meta,
    model_facts,
    model_meta,
    training_metrics,
)
from farmseg.training.samples import Sample
from farmseg.training.scoring import field_iou, selection_score
from farmseg.training.validating import ValidationImages, inference_bundle

MADE = {"date": "2026-01-01T00:00:00+00:00", "farmseg": "0", "torch": "0", "machine": "x"}


def _sample(name: str = "a", h: int = 40, w: int = 48, bands: int = 3,
            dtype: str = "uint8", pixel: float = 1.0) -> Sample:
    rng = np.random.default_rng(0)
    mask = np.zeros((h, w), np.uint8)
    mask[5:30, 5:40] = 1
    mask[5, 5:40] = 2
    return Sample(name, rng.integers(0, 255, (bands, h, w)).astype(dtype), mask,
                  np.ones((h, w), bool), dtype, pixel, [f"/d/images/{name}.tif"],
                  from_origin(500000, 4500000, pixel, pixel), CRS.from_epsg(32615))


def _figures(**kw) -> Figures:
    return Figures(**{"epochs_done": 3, "history": [{"epoch": 1}], "selection_score": 0.7108,
                      "val_pixel_iou": 0.9312, "val_field_f1": 0.7015,
                      "base_val_pixel_iou": 0.92, "base_val_field_f1": 0.69, **kw})


def test_metrics_name_each_figure_for_what_it_is():
    metrics = training_metrics(_figures())
    assert metrics == {"val_selection_score": 0.7108, "val_pixel_iou": 0.9312,
                       "val_field_f1": 0.7015, "base_val_pixel_iou": 0.92,
                       "base_val_field_f1": 0.69}
    assert not any("field_iou" in key for key in metrics)
    # without validation nothing is claimed
    assert training_metrics(Figures()) == {"val_selection_score": None}


def test_bundle_meta_from_scratch():
    config = TrainConfig(data="/d", out="/m/new", epochs=3, command="farmseg train ...")
    samples = [_sample("a"), _sample("b", pixel=1.2)]
    facts = model_facts(config, None, "Unet", "mobilenet_v2", samples, samples[1:],
                        {"kind": "fixed"}, {"field_threshold": 0.5})
    meta = bundle_meta(config, facts, _figures(), partial=True, made=MADE)
    assert meta["name"] == "new" and meta["partial"] is True
    assert meta["input"] == {"bands": [1, 2, 3], "band_names": ["red", "green", "blue"],
                             "dtype": "uint8", "pixel_size_m": 1.1}
    assert meta["inference"] == {"tile": 512, "overlap": 64}
    assert meta["postprocess"] == {"field_threshold": 0.5}
    training = meta["training"]
    assert training["base"] is None and training["validation"] == ["b"]
    assert training["files"] == ["/d/images/a.tif", "/d/images/b.tif"]
    assert training["epochs_done"] == 3 and training["date"] == MADE["date"]
    assert training["command"] == "farmseg train ..." and "command" not in training["config"]
    assert meta["metrics"]["val_selection_score"] == 0.7108


def test_bundle_meta_of_a_fine_tuned_model_drops_the_base_figures_and_verdicts():
    base = load_bundle("default")
    config = TrainConfig(data="/d", out="/m/tuned", base="default")
    samples = [_sample()]
    facts = model_facts(config, base, base.arch, base.encoder, samples, [], base.scaling,
                        base.thresholds)
    meta = bundle_meta(config, facts, Figures(epochs_done=2), partial=False, made=MADE)
    assert "precision" not in meta
    assert meta["metrics"] == {"val_selection_score": None}
    assert meta["training"]["base"] == "default"
    assert meta["input"]["band_names"] == base.band_names
    assert meta["inference"] == base.meta["inference"]
    assert model_meta(facts)["postprocess"] == base.thresholds


def test_four_band_data_gets_neutral_band_names():
    facts = model_facts(TrainConfig(data="/d", out="/m/x"), None, "Unet", "e",
                        [_sample(bands=4)], [], {}, {})
    assert facts.band_names == ["band1", "band2", "band3", "band4"] and facts.n_bands == 4


def test_selection_score_is_f1_with_iou_as_tie_break_else_lowest_loss():
    assert selection_score(0.7, 0.9, 5.0) == pytest.approx(0.709)
    assert selection_score(None, None, 0.4) == -0.4
    assert selection_score(0.7, 0.9, 0.0) > selection_score(0.7, 0.8, 0.0)


def test_field_iou_counts_field_and_boundary_against_the_labels():
    sample = _sample()
    exact = np.stack([sample.mask == k for k in range(3)]).astype(np.float32)
    assert field_iou([exact], [sample]) == 1.0
    nothing = np.zeros_like(exact)
    nothing[0] = 1.0
    assert field_iou([nothing], [sample]) == 0.0


def test_best_epoch_keeps_a_copy_of_the_best_weights_only():
    torch = pytest.importorskip("torch")
    from farmseg.training.trainer import BestEpoch

    model = torch.nn.Linear(2, 1)
    best = BestEpoch()
    assert best.offer(1, 0.5, model) and best.epoch == 1
    kept = best.state["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    assert torch.equal(best.state["weight"], kept)  # a copy, not the live tensor
    assert not best.offer(2, 0.4, model) and not best.offer(3, math.nan, model)
    assert best.offer(4, 0.6, model) and best.epoch == 4


def test_epoch_report_line_and_figures():
    pytest.importorskip("torch")
    from farmseg.training.trainer import EpochReport, EpochScore, epoch_progress

    report = EpochReport(2, 0.51234, 0.8, 1.0)
    progress = epoch_progress(report, 5, EpochScore(0.8, 0.7, 0.9), 0.85)
    assert progress.message == "epoch 2: loss 0.512, val field IoU 0.800, field F1 0.700"
    assert (progress.stage, progress.done, progress.total) == ("epoch", 2, 5)
    assert progress.extra == {"epoch": 2, "loss": 0.51234, "val_iou": 0.8, "val_f1": 0.7,
                              "base_val_iou": 0.85}
    assert epoch_progress(report, 5, EpochScore(), None).message == "epoch 2: loss 0.512"


def test_crop_size_refuses_images_smaller_than_the_crop():
    pytest.importorskip("torch")
    from farmseg.training.trainer import crop_size

    config = TrainConfig(data="/d", out="/m", tile=100)
    assert crop_size(config, [_sample(h=80, w=90)]) == 64
    with pytest.raises(InputError, match="smaller than the 32 px crop"):
        crop_size(config, [_sample(h=80, w=90), _sample("b", h=20, w=60)])


def test_inference_reads_the_samples_bands_resampled_like_segment(tmp_path):
    meta = load_bundle("fast").meta
    bundle = inference_bundle(meta, tmp_path)
    assert bundle.bands == [1, 2, 3] and bundle.pixel_size_m == meta["input"]["pixel_size_m"]
    assert bundle.scaling == meta["scaling"] and bundle.tile == meta["inference"]["tile"]


class _Constant:
    """A predictor that answers the same probabilities everywhere."""

    name = "constant"

    def suggested_batch(self, tile: int) -> int:
        return 2

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = np.empty((batch.shape[0], 3) + batch.shape[2:], np.float32)
        out[:, 0], out[:, 1], out[:, 2] = 0.2, 0.7, 0.1
        return out


def test_validation_images_go_through_tiled_inference_with_their_validity(tmp_path):
    sample = _sample(h=70, w=600)  # wider than a 512 px tile: two tiles, blended
    sample.valid[:, :10] = False
    meta = load_bundle("default").meta
    images = ValidationImages([sample], tmp_path)
    (probs,) = images.probabilities(meta, _Constant())
    assert probs.shape == (3, 70, 600) and probs.dtype == np.float32
    assert np.allclose(probs[:, :, 10:], np.array([0.2, 0.7, 0.1])[:, None, None], atol=0.003)
    assert np.all(probs[0, :, :10] == 1.0)  # nodata is certain background, like `segment`
