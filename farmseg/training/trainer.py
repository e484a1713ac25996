"""The training loop (imports torch): random crops, class-weighted loss, best checkpoint.

`train_job` is a generator of Progress; closing it (cancel, Ctrl-C) writes the best epoch
so far as a complete bundle marked `partial` (nothing before the first epoch ends).
Validation images are predicted by the pipeline's tiled inference, as `segment` would.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from farmseg.errors import InputError, UsageError
from farmseg.jobs import Job, Progress
from farmseg.models.bundle import (
    CLASS_NAMES,
    ModelBundle,
    load_bundle,
)
from farmseg.models.engines import make_predictor
from farmseg.models.nets import (
    build_network,
    load_imagenet_encoder,
    network_from_bundle,
    smp_arch,
    smp_encoder,
)
from farmseg.scoring.evaluate import Score
from farmseg.training.blocks import split_blocks
from farmseg.training.bundle_output import (
    export_network,
    training_result,
    weights_copy,
    write_bundle,
)
from farmseg.training.config import Familiarity, TrainConfig
from farmseg.training.crops import CropSampler, RehearsalSampler, choose_scaling
from farmseg.training.losses import LOSSES, LossRecipe
from farmseg.training.metadata import (
    Figures,
    ModelFacts,
    model_facts,
    model_meta,
)
from farmseg.training.replay import rehearsal_samples, replay_scaling
from farmseg.training.samples import (
    Sample,
    find_labeled_pairs,
    images_pixel_size,
    load_sample,
    resampled,
    split_by_names,
    split_validation,
)
from farmseg.training.schedule import FINETUNE_PASSES, steps_per_epoch
from farmseg.training.scoring import field_iou, score_samples, selection_score
from farmseg.training.validating import ValidationImages
from farmseg.training.verdict import Verdict, judge

CPU = torch.device("cpu")
DEFAULT_POSTPROCESS = {"field_threshold": 0.5, "seed_threshold": 0.5, "boundary_threshold": 0.5}


@dataclass
class EpochReport:
    epoch: int
    train_loss: float
    val_iou: float | None  # field-or-boundary pixel IoU of the most likely class
    seconds: float


def warmup_cosine(total_steps: int, warmup_fraction: float = 0.1):
    """LR factor per step: linear warm-up, then cosine decay to 1 % (works for 1 step too)."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def pick_device(name: str) -> torch.device:
    """`auto`: CUDA where available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda: no CUDA GPU is available")
    return torch.device(name)


def training_autocast(device: torch.device, precision: str) -> torch.dtype | None:
    """bf16 autocast on CPUs with native bf16 (auto or asked for), else None (fp32)."""
    from farmseg.models.cpu import has_native_bf16

    if precision not in ("auto", "fp32", "bf16"):
        raise UsageError(None, f"unknown training precision '{precision}' (auto, fp32, bf16)")
    if precision == "bf16" or (precision == "auto" and device.type == "cpu"
                               and has_native_bf16()):
        return torch.bfloat16
    return None


def load_samples(config: TrainConfig, base: ModelBundle | None) -> list[Sample]:
    """The labeled images at their own pixel size, checked to be of one kind."""
    samples = [load_sample(img, lbl, base.bands if base else None,
                           base.band_names if base else None)
               for img, lbl in find_labeled_pairs(Path(config.data))]
    counts = {s.image.shape[0] for s in samples}
    dtypes = {s.dtype for s in samples}
    if len(counts) > 1 or len(dtypes) > 1:
        raise InputError(config.data, f"images differ in band count or dtype ({sorted(counts)}, "
                         f"{sorted(dtypes)}); use one kind of imagery per training set")
    return samples


def training_pixel_size(config: TrainConfig, base: ModelBundle | None) -> float | None:
    """The asked pixel size, else the base model's (imagery for it is resampled to that size
    anyway), else None (the images' own)."""
    return config.pixel_size or (base.pixel_size_m if base else None)


def split_samples(config: TrainConfig, samples: list[Sample], pixel_size: float | None,
                  base: ModelBundle | None = None) -> tuple[list[Sample], list[Sample]]:
    """(training samples at the training pixel size, validation samples scored the way
    `segment` would score them: on their own grid, or resampled to an asked `--pixel-size`,
    the grid of the imagery such a model is made for). Fine-tuning validates on a block of
    each labelled area (blocks.py), training from scratch on whole images or strips. Data
    that holds all the images the base (or the resumed run) validated on gets those held
    out again, whatever `--seed` says, so a later stage never trains on them."""
    fraction = config.val_fraction or 0.0
    recorded = base.validation_names if base else []
    again = split_by_names(samples, recorded) if fraction > 0 else None
    if again is not None:
        train, val = again
    elif config.fine_tuning:
        train, val = split_blocks(samples, fraction)
    else:
        train, val = split_validation(samples, fraction, config.seed)
    if pixel_size:
        train = [resampled(s, pixel_size) for s in train]
    if config.pixel_size:
        val = [resampled(s, config.pixel_size) for s in val]
    return train, val


def crop_size(config: TrainConfig, train: list[Sample]) -> int:
    """The training crop: the asked tile, at most the smallest image, a multiple of 32."""
    crop = min([config.tile] + [min(s.shape) for s in train])
    crop = max(32, crop - crop % 32)
    small = next((s for s in train if min(s.shape) < crop), None)
    if small is not None:
        raise InputError(small.files[0], f"is smaller than the {crop} px crop size")
    return crop


# ---- run state ------------------------------------------------------------------------

@dataclass
class BestEpoch:
    """The epoch to keep: its number (0: the base model), selection score and weights."""

    epoch: int = 0
    score: float = -math.inf
    state: dict[str, torch.Tensor] | None = None

    def offer(self, epoch: int, score: float, model: torch.nn.Module) -> bool:
        """Keep `model`'s weights when `score` beats the best so far; True when it did."""
        if not score > self.score:
            return False
        self.epoch, self.score, self.state = epoch, score, weights_copy(model)
        return True

    def take(self, epoch: int, model: torch.nn.Module) -> None:
        """Keep `model`'s weights whatever the score (fine-tuning keeps the last epoch)."""
        self.epoch, self.score, self.state = epoch, math.nan, weights_copy(model)


@dataclass
class RunState:
    """What a run has measured so far."""

    history: list[EpochReport] = field(default_factory=list)
    best: BestEpoch = field(default_factory=BestEpoch)
    base_score: Score | None = None  # the base model on the validation images
    base_probs: list[np.ndarray] | None = None  # fine-tuning: the base's, as segment makes them
    final_score: Score | None = None  # the kept weights on the validation images
    verdict: Verdict | None = None  # fine-tuning: fine-tuned vs base on the validation block
    settings: dict[str, Any] | None = None  # fine-tuning: TrainConfig.finetune_settings

    def finetune_record(self) -> dict[str, Any] | None:
        """The bundle's `finetune` section: the verdict and the settings the run chose."""
        if self.verdict is None:
            return None
        return {**self.verdict.section(), "settings": self.settings}

    def figures(self, validated: bool) -> Figures:
        """The figures the bundle's metadata records."""
        base, final = self.base_score, self.final_score
        selected = validated and self.best.state is not None and not math.isnan(self.best.score)
        return Figures(
            epochs_done=self.best.epoch, history=[asdict(h) for h in self.history],
            selection_score=self.best.score if selected else None,
            val_pixel_iou=final.pixel_iou if final else None,
            val_field_f1=final.f1 if final else None,
            base_val_pixel_iou=base.pixel_iou if base else None,
            base_val_field_f1=base.f1 if base else None,
            finetune=self.finetune_record())


@dataclass
class Optimization:
    """The network and what trains it."""

    model: torch.nn.Module
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: RehearsalSampler
    loss: LossRecipe
    autocast: torch.dtype | None
    steps: int  # per epoch

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cpu"  # 1.6x faster training steps on CPU (measured)


@dataclass
class TrainingRun:
    """One run: its settings, what it fixed, its validation samples, optimization, state."""

    config: TrainConfig
    facts: ModelFacts
    val: list[Sample]
    opt: Optimization
    base: ModelBundle | None = None
    state: RunState = field(default_factory=RunState)


# ---- set-up ---------------------------------------------------------------------------

def build_model(config: TrainConfig, base: ModelBundle | None,
                n_bands: int) -> tuple[torch.nn.Module, str, str]:
    """The network to train (the base's weights, else an ImageNet encoder), arch, encoder."""
    if base is not None:
        return network_from_bundle(base.meta, base.weights_path), base.arch, base.encoder
    arch, encoder = smp_arch(config.arch), smp_encoder(config.encoder)
    model = build_network(arch, encoder, n_bands, len(CLASS_NAMES))
    load_imagenet_encoder(model, encoder)
    return model, arch, encoder


def make_sampler(config: TrainConfig, base: ModelBundle | None, train: list[Sample], crop: int,
                 scaling: dict[str, Any]) -> RehearsalSampler:
    """Crops of the training set; when fine-tuning, a share of each batch from the base's
    replay set, read with the replay data's own scaling."""
    user = CropSampler(train, crop, scaling, config.seed, config.scale_jitter)
    replay, share = None, config.replay_share or 0.0
    if config.fine_tuning and base is not None and share > 0:
        samples = rehearsal_samples(base.path, training_pixel_size(config, base), crop)
        if samples:
            replay = CropSampler(samples, crop, replay_scaling(base.meta), config.seed + 1,
                                 config.scale_jitter)
    return RehearsalSampler(user, replay, share)


def make_optimization(config: TrainConfig, model: torch.nn.Module, device: torch.device,
                      train: list[Sample], crop: int, sampler: RehearsalSampler
                      ) -> Optimization:
    """Model on its device, AdamW with warm-up and cosine decay, the sampler's crops."""
    model.to(device).train()
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    if config.freeze_encoder:
        for p in model.get_submodule("encoder").parameters():
            p.requires_grad = False
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr or 0.0, weight_decay=1e-4)
    train_pixels = sum(int(s.valid.sum()) for s in train)
    user_crops = config.batch - sampler.replay_count(config.batch)
    steps = steps_per_epoch(train_pixels, crop, config.batch, config.epochs,
                            user_crops if config.fine_tuning else None,
                            config.passes or FINETUNE_PASSES)
    autocast = training_autocast(device, config.precision)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                  warmup_cosine(steps * config.epochs))
    return Optimization(model, device, optimizer, scheduler, sampler, LOSSES[config.loss],
                        autocast, steps)


def start_run(config: TrainConfig) -> TrainingRun:
    """Load the base and the data, check them, build the network and its optimizer."""
    config = config.resolved()
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    base = (load_bundle(config.base, images_pixel_size(Path(config.data))) if config.base
            else None)
    if config.resume:
        base = load_bundle(config.out)
    samples = load_samples(config, base)
    train, val = split_samples(config, samples, training_pixel_size(config, base), base)
    crop = crop_size(config, train)
    scaling = choose_scaling(train, base.meta if base else None)
    model, arch, encoder = build_model(config, base, samples[0].image.shape[0])
    sampler = make_sampler(config, base, train, crop, scaling)
    opt = make_optimization(config, model, device, train, crop, sampler)
    postprocess = (base.thresholds if base else {}) or DEFAULT_POSTPROCESS
    facts = model_facts(config, base, arch, encoder, train, val, scaling, postprocess)
    return TrainingRun(config, facts, val, opt, base)


# ---- epochs ---------------------------------------------------------------------------

def train_step(opt: Optimization, batch: int) -> float:
    """One optimizer step on a batch of random crops; its loss."""
    images, masks = opt.sampler.batch(batch)
    x = torch.from_numpy(images).to(opt.device)
    if opt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(masks).to(opt.device)
    with torch.autocast(opt.device.type, dtype=opt.autocast, enabled=opt.autocast is not None):
        logits = opt.model(x)
    loss = opt.loss(logits.float(), y)
    opt.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    opt.optimizer.step()
    opt.scheduler.step()
    return float(loss.detach())


def train_steps(run: TrainingRun, epoch: int) -> Job[float]:
    """One epoch of steps, each reported; returns the epoch's mean loss."""
    opt, config = run.opt, run.config
    opt.model.train()
    if config.freeze_encoder:
        opt.model.get_submodule("encoder").eval()
    losses: list[float] = []
    for step in range(opt.steps):
        losses.append(train_step(opt, config.batch))
        loss = float(np.mean(losses))
        yield Progress("train", (epoch - 1) * opt.steps + step + 1, opt.steps * config.epochs,
                       f"epoch {epoch}/{config.epochs} loss {loss:.3f}",
                       {"epoch": epoch, "loss": loss})
    return float(np.mean(losses))


class ModulePredictor:
    """The network being trained as a pipeline predictor (fp32, no gradients)."""

    name = "torch/training"

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device

    def suggested_batch(self, tile: int) -> int:
        return 2 if tile <= 512 else 1

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = self.model(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


def predict_validation(run: TrainingRun, images: ValidationImages) -> list[np.ndarray]:
    """Probabilities of the validation images from the network as it is (left in eval
    mode), by the pipeline's tiled inference."""
    run.opt.model.eval()
    return images.probabilities(model_meta(run.facts),
                                ModulePredictor(run.opt.model, run.opt.device))


@dataclass(frozen=True)
class EpochScore:
    """An epoch's validation figures (None without validation images)."""

    val_iou: float | None = None  # field-or-boundary pixel IoU of the most likely class
    val_f1: float | None = None  # field-level F1 of the polygons
    polygon_iou: float | None = None  # field pixel IoU of the polygons


def score_epoch(run: TrainingRun, images: ValidationImages) -> EpochScore:
    """The scoring step: the network's validation figures, polygons scored like `validate`."""
    if not run.val:
        return EpochScore()
    probs = predict_validation(run, images)
    score = score_samples(probs, run.val, run.facts.postprocess)
    return EpochScore(field_iou(probs, run.val), score.f1, score.pixel_iou)


def epoch_progress(report: EpochReport, epochs: int, score: EpochScore,
                   base_iou: float | None) -> Progress:
    """The end-of-epoch report: a line for the CLI, figures for the GUI's chart."""
    text = f"epoch {report.epoch}: loss {report.train_loss:.3f}"
    if score.val_iou is not None:
        text += f", val field IoU {score.val_iou:.3f}, field F1 {score.val_f1:.3f}"
    return Progress("epoch", report.epoch, epochs, text,
                    {"epoch": report.epoch, "loss": report.train_loss, "val_iou": score.val_iou,
                     "val_f1": score.val_f1, "base_val_iou": base_iou})


def run_epochs(run: TrainingRun, images: ValidationImages) -> Job[None]:
    """Every epoch: steps, scoring, the best epoch kept (and checkpointed if asked)."""
    config, state = run.config, run.state
    base_iou = state.base_score.pixel_iou if state.base_score else None
    clock = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        loss = yield from train_steps(run, epoch)
        score = score_epoch(run, images)
        state.history.append(EpochReport(epoch, loss, score.val_iou, time.monotonic() - clock))
        clock = time.monotonic()
        if config.fine_tuning:  # the last epoch: choosing the best of many noisy scores
            state.best.take(epoch, run.opt.model)  # of a small block would flatter it
            kept = True
        else:  # polygons scored like the base model's, so that the comparison is fair
            kept = state.best.offer(epoch, selection_score(score.val_f1, score.polygon_iou,
                                                           loss), run.opt.model)
        if kept and config.checkpoint and epoch < config.epochs:
            write_bundle(run, partial=True)
        yield epoch_progress(state.history[-1], config.epochs, score, base_iou)


def score_base(run: TrainingRun, images: ValidationImages) -> None:
    """The base model on the validation images is the one to beat: never ship worse. When
    fine-tuning it runs as `segment` runs it (its own engine, e.g. int8 ONNX)."""
    if run.facts.base_name is None or not run.val:
        return
    if run.config.fine_tuning and run.base is not None:
        pixels = sum(s.valid.size for s in run.val)
        probs = images.probabilities(run.base.meta, make_predictor(run.base, pixels=pixels))
        run.state.base_probs = probs
        run.state.base_score = score_samples(probs, run.val, run.facts.postprocess)
        return
    score = score_samples(predict_validation(run, images), run.val, run.facts.postprocess)
    run.state.base_score = score
    run.state.best.offer(0, selection_score(score.f1, score.pixel_iou, 0.0), run.opt.model)
    run.opt.model.train()


def adapt_to_base(run: TrainingRun, asked: TrainConfig) -> Job[None]:
    """Fine-tuning: the settings not asked for (`asked`: the config as given) chosen from how
    well the base knows the user's data (its score on the validation block, config.Familiarity)
    and the optimization rebuilt with them; reports them as a "settings" line."""
    if run.base is None or not run.config.fine_tuning:
        return
    block_f1 = run.state.base_score.f1 if run.state.base_score else None
    familiarity = Familiarity.of(block_f1, run.base.meta)
    run.config = asked.resolved(familiarity)
    run.state.settings = asked.finetune_settings(familiarity)
    opt = run.opt
    opt.sampler.share = run.config.replay_share or 0.0
    run.opt = make_optimization(run.config, opt.model, opt.device, opt.sampler.user.samples,
                                opt.sampler.user.crop, opt.sampler)
    yield Progress("settings", 1, 1, "fine-tuning settings: " + run.state.settings["reason"])


def score_kept(run: TrainingRun, images: ValidationImages) -> None:
    """Restore the kept weights and score them: the figures the bundle records. A fine-tune
    is judged against its base (verdict.py) with its weights as the bundle stores them."""
    if not run.val or run.state.best.state is None:
        return
    run.opt.model.load_state_dict(run.state.best.state)
    if run.state.base_probs is None:
        run.state.final_score = score_samples(predict_validation(run, images), run.val,
                                              run.facts.postprocess)
        return
    stored = export_network(run)
    probs = images.probabilities(model_meta(run.facts), ModulePredictor(stored, CPU))
    verdict = judge(run.state.base_probs, probs, run.val, run.facts.postprocess,
                    run.config.keep_finetuned)
    run.state.verdict = verdict
    run.state.final_score = verdict.candidate_score


def train_job(config: TrainConfig) -> Job[dict[str, Any]]:
    """Train (or fine-tune) a model and write it as a bundle; yields Progress."""
    run = start_run(config)
    with tempfile.TemporaryDirectory(prefix="farmseg-validation-") as tmp:
        images = ValidationImages(run.val, Path(tmp))
        score_base(run, images)
        yield from adapt_to_base(run, config)
        finished = False
        try:
            yield from run_epochs(run, images)
            score_kept(run, images)
            path = write_bundle(run, partial=False)
            finished = True
            return training_result(run, path)
        finally:
            if not finished and run.state.history:  # an epoch ran: keep the best so far
                write_bundle(run, partial=True)
