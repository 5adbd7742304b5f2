"""The training loop of one stage (paper §2.3), in plain PyTorch.

Per epoch: (re)compute the EFM when the schedule says so, train one pass with AMP, gradient
clipping and an EMA of the weights, validate (on the EMA weights where EMA is on), and keep the
weights with the best validation IoU. All that changes while training lives in one
:class:`TrainState`, so a later resume can save and restore it whole.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchmetrics.classification import MulticlassConfusionMatrix
from tqdm.auto import tqdm

from efm_seg.basics.provenance import processor_name
from efm_seg.data.imagery import describe_bands
from efm_seg.data.samples import SampleStore
from efm_seg.efm import (
    DEFAULT_ALPHA_F,
    DEFAULT_TOPK_RATIO,
    EFMLoss,
    entropy_map,
    fingerprint_map,
)
from efm_seg.evaluation.calibration import collect_logits, fit_temperature, nll
from efm_seg.evaluation.metrics import scores_from_confusion
from efm_seg.loading import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EFMStore,
    SegmentationSamples,
    band_statistics,
    build_transforms,
    reseed_transform,
    sample_shape,
    undo_dihedral,
)
from efm_seg.models import (
    ModelSpec,
    build_model,
    check_input_size,
    make_checkpoint,
    model_from_checkpoint,
)
from efm_seg.training import distributed
from efm_seg.training.config import TrainConfig, recipe_of
from efm_seg.training.criteria import baseline_loss, build_criterion
from efm_seg.training.precision import resolve_device, resolve_precision
from efm_seg.training.resume import ResumeMismatchError, StateFile, differences

logger = logging.getLogger(__name__)


class NumericFaultError(RuntimeError):
    """A loss, gradient or validated weight became NaN or infinite; the message says where."""


class _NonFinite(Exception):
    """Raised inside a step: ``what`` (the loss, the gradients) is not finite."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass
class TrainState:
    """Everything that changes during a stage — the one place a resume would snapshot."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler | None
    ema: AveragedModel | None
    efm_store: EFMStore | None = None
    efm_prior: torch.Tensor | None = None
    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved: the EMA where EMA is on."""
        return self.ema.module if self.ema is not None else self.model


@dataclass
class StageResult:
    """What a stage produces: the best checkpoint, the per-epoch history and EFM snapshots."""

    checkpoint: dict[str, Any]
    history: list[dict[str, Any]]
    snapshots: dict[str, np.ndarray]


def epoch_scores(confusion: torch.Tensor) -> dict[str, float]:
    """What the history records per epoch: pixel accuracy, and IoU and F1 as macro means over
    the classes present (``miou`` and ``mf1`` of the evaluation's ``scores_from_confusion``).
    """
    overall, _ = scores_from_confusion(confusion)
    return {"accuracy": overall["accuracy"], "iou": overall["miou"], "f1": overall["mf1"]}


def hardware_name(device: torch.device) -> str:
    """What computes on ``device``: the GPU's name and CUDA version, else the processor's."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return processor_name()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a generator for the data loader's shuffling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class StageJob:
    """Everything one stage's training needs (the :class:`Trainer`'s arguments), picklable, so
    that :func:`fit_stage` runs it in this process or in each process of a DDP launch."""

    config: TrainConfig
    store: SampleStore
    train_ids: Sequence[str]
    val_ids: Sequence[str]
    classes: Sequence[str]
    ignore_index: int
    init_checkpoint: Mapping[str, Any] | None = None
    state_file: StateFile | None = None
    resume_key: Mapping[str, Any] | None = None
    run_id: str | None = None  # recorded in each history row: the run that trained the epoch


def fit_stage(job: StageJob) -> StageResult | None:
    """Train ``job``'s stage; the result on rank 0 (``None`` on other ranks of a DDP run)."""
    trainer = Trainer(
        job.config, job.store, job.train_ids, job.val_ids, job.classes, job.ignore_index,
        init_checkpoint=job.init_checkpoint, state_file=job.state_file,
        resume_key=job.resume_key, run_id=job.run_id,
    )  # fmt: skip
    result = trainer.fit()
    return result if trainer.rank == 0 else None


def train(job: StageJob) -> StageResult:
    """Train ``job``'s stage here, or with DDP on ``training.distributed``'s processes (launched
    from this process by torch's elastic launcher); rank 0's result either way."""
    launch = job.config.distributed
    if not launch.enabled:
        return fit_stage(job)
    device = resolve_device(job.config.device)
    logger.info(
        "%s: training on %d processes (%d per node × %d node(s), %s%s)",
        job.config.stage, launch.world_size, launch.nproc_per_node, launch.nnodes,
        distributed.resolve_backend(launch, device),
        ", SyncBatchNorm" if launch.sync_batchnorm else "",
    )  # fmt: skip
    result = distributed.launch(launch, fit_stage, job, device=device)
    if result is None:
        raise distributed.DistributedError(
            f"{job.config.stage}: this node trained its share of a {launch.nnodes}-node run; "
            "the node that ran rank 0 writes the stage's outputs, so this one stops here"
        )
    return result


class Trainer:
    """Trains one stage.

    Args:
        config: The stage's validated configuration.
        store: The encoded samples.
        train_ids: Ids of the training samples.
        val_ids: Ids of the validation samples (model selection, EFM prior, snapshots).
        classes: Class names; their count is the model's number of outputs.
        ignore_index: Label of pixels that are never scored.
        init_checkpoint: A previous stage's checkpoint to start from (``init_from: previous``).
        state_file: Where the resumable state is saved every ``config.resume_every`` epochs;
            ``None`` trains without one. With ``config.resume`` a saved state is resumed from
            (it must come from the same configuration and data), else it is discarded.
        resume_key: What else identifies the run beyond the configuration (e.g. the data's
            fingerprints and the checkpoint started from); a saved state must match it.
    """

    def __init__(
        self,
        config: TrainConfig,
        store: SampleStore,
        train_ids: Sequence[str],
        val_ids: Sequence[str],
        classes: Sequence[str],
        ignore_index: int,
        init_checkpoint: Mapping[str, Any] | None = None,
        state_file: StateFile | None = None,
        resume_key: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> None:
        if len(train_ids) == 0 or len(val_ids) == 0:
            raise ValueError(
                f"{config.stage}: the split has {len(train_ids)} training and {len(val_ids)} "
                "validation samples; both need at least one (see parameters_split.yml)"
            )
        self.config = config
        self.run_id = run_id
        self.store = store
        self.state_file = state_file
        self._saved_epoch = 0  # the last epoch whose state is in state_file
        self._skipped_steps = 0  # this epoch's steps skipped by the fp16 gradient scaler
        self._steps = 0  # this epoch's optimiser steps (the same on every rank)
        # A saved state resumes only the run it came from: same recipe (where the run happens
        # and the save interval aside), same samples, same data and starting point.
        self.resume_key = {
            "recipe": recipe_of(config.record()),
            "train_ids": list(train_ids),
            "val_ids": list(val_ids),
            "classes": list(classes),
            **dict(resume_key or {}),
        }
        self.classes = list(classes)
        self.ignore_index = ignore_index
        # Data-parallel (training.distributed): this process is one of `world` ranks, each
        # with batch_size / world samples per step; rank 0 alone writes.
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.device = resolve_device(config.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", distributed.local_rank())
            torch.cuda.set_device(self.device)
        self.hardware = hardware_name(self.device)
        self.amp_dtype, use_scaler = resolve_precision(config, self.device)
        generator = seed_everything(config.seed)
        # In this order: the model is built right after seeding, so that stages with the same
        # seed start from the same weights; the data loaders draw from the seeded generator.
        model = self._build_model(train_ids, val_ids, init_checkpoint)
        self.normalization = self._normalization(init_checkpoint, train_ids)
        self._build_criteria()
        self.state = self._build_state(model, len(train_ids), use_scaler)
        # The training steps go through DDP (gradients averaged over the ranks); every other
        # forward (validation, EFM refresh, snapshots) uses the plain model, so no rank waits
        # for another there. The state keeps the plain model: checkpoints and resume need it.
        self.train_model: nn.Module = model
        if self.world > 1:
            self.train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        self._build_loaders(train_ids, val_ids, generator)

    # -- set-up ------------------------------------------------------------------------------
    def _build_model(
        self,
        train_ids: Sequence[str],
        val_ids: Sequence[str],
        init_checkpoint: Mapping[str, Any] | None,
    ) -> nn.Module:
        """The stage's model on its device: new weights, or the previous stage's."""
        config = self.config
        self.spec = ModelSpec(
            arch=config.arch,
            encoder=config.encoder,
            num_classes=len(self.classes),
            in_channels=self.store.channels,
        )
        self.image_size = sample_shape(self.store, list(train_ids) + list(val_ids))
        check_input_size(self.spec, *self.image_size)
        model = build_model(self.spec, config.encoder_weights)
        if init_checkpoint is not None:
            self._load_init(model, init_checkpoint)
        if self.world > 1 and config.distributed.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model.to(self.device)

    def _build_criteria(self) -> None:
        """The stage's loss (eq. 10 with EFM, else ``training.criterion``) and eq. 6 for
        validation."""
        loss = dict(self.config.loss)
        classes = len(self.classes)
        # Eq. 6, the baseline objective: the validation loss of every stage, so that the curves
        # of the stages (and of the study's criteria) can be compared.
        self.baseline_criterion = baseline_loss(classes, self.ignore_index, loss)
        if self.config.efm.enabled:
            self.criterion = EFMLoss(classes, ignore_index=self.ignore_index, **loss)
        else:
            self.criterion = build_criterion(
                self.config.criterion, classes, self.ignore_index, loss
            ).to(self.device)

    def _build_state(self, model: nn.Module, train_count: int, use_scaler: bool) -> TrainState:
        """What changes while the stage trains: optimiser, schedule, scaler, EMA, EFM store."""
        config = self.config
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
            if config.scheduler == "cosine"
            else None
        )
        ema = (
            AveragedModel(
                model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True
            )
            if config.ema_enabled
            else None
        )
        efm_store = None
        if config.efm.enabled and config.efm.source == "per_sample":
            efm_store = EFMStore(train_count, *self.image_size)
        return TrainState(
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=torch.amp.GradScaler(self.device.type) if use_scaler else None,
            ema=ema,
            efm_store=efm_store,
        )

    def _build_loaders(
        self, train_ids: Sequence[str], val_ids: Sequence[str], generator: torch.Generator
    ) -> None:
        """The training loader (augmented, with the EFM store) and the loaders of the passes
        without gradients (EFM refresh, validation, snapshots)."""
        config, store = self.config, self.store
        norm = {"mean": self.normalization["mean"], "std": self.normalization["std"]}
        self.batch_size = config.batch_size // self.world  # per rank; the global batch is
        loader_args = {
            "batch_size": self.batch_size,
            "num_workers": config.num_workers,
            "pin_memory": self.device.type == "cuda",
            "persistent_workers": config.num_workers > 0,
        }
        train_set = SegmentationSamples(
            store,
            train_ids,
            build_transforms(config.augment, seed=self._augment_seed(), rgb=self.rgb),
            self.state.efm_store,
            track_geometry=config.efm.collects_from_steps(config.epochs),
            **norm,
        )
        # A last batch of one sample would break batch norm; drop it when there are more.
        drop_last = len(train_set) > config.batch_size
        if self.world > 1:
            # Each rank a disjoint share of a new permutation every epoch (set_epoch). Dropping
            # the tail keeps the steps per epoch those of one process with the global batch:
            # floor(floor(N / world) / (batch / world)) == floor(N / batch).
            self.sampler: DistributedSampler | None = DistributedSampler(
                train_set, self.world, self.rank, shuffle=True, seed=config.seed, drop_last=True
            )
            self.train_loader = DataLoader(
                train_set, sampler=self.sampler, drop_last=drop_last, **loader_args
            )
        else:
            self.sampler = None
            self.train_loader = DataLoader(
                train_set, shuffle=True, generator=generator, drop_last=drop_last, **loader_args
            )
        # Passes without gradients: each rank takes every world-th sample (items keep their
        # index in the whole split, which the EFM store is addressed by); results are summed or
        # gathered over the ranks.
        self.train_eval_loader = DataLoader(
            self._shard(SegmentationSamples(store, train_ids, **norm)), **loader_args
        )
        self.val_loader = DataLoader(
            self._shard(SegmentationSamples(store, val_ids, **norm)), **loader_args
        )
        # The whole validation split on every rank: the temperature is fitted on all of it.
        full_val = SegmentationSamples(store, val_ids, **norm)
        self.full_val_loader = DataLoader(full_val, **loader_args)
        self.val_count = len(val_ids)
        self.snapshot_ids = sorted(val_ids)[: config.snapshot_count]
        self.snapshot_loader = (
            DataLoader(
                SegmentationSamples(store, self.snapshot_ids, **norm),
                batch_size=config.batch_size,
            )
            if self.snapshot_ids
            else None
        )

    # -- set-up helpers ----------------------------------------------------------------------
    def _shard(self, dataset: SegmentationSamples) -> Dataset:
        """This rank's share of a dataset for a pass without gradients (all of it on one)."""
        if self.world == 1:
            return dataset
        return Subset(dataset, range(self.rank, len(dataset), self.world))

    def _augment_seed(self) -> int:
        """Rank 0 draws the augmentations a single process would; other ranks their own."""
        if self.rank == 0:
            return self.config.seed
        return int(np.random.SeedSequence([self.config.seed, self.rank]).generate_state(1)[0])

    @property
    def rgb(self) -> bool:
        """Whether the samples are RGB (``dataset.bands`` unset), as ImageNet encoders expect."""
        return self.store.bands is None and self.store.channels == 3

    def _normalization(
        self, init_checkpoint: Mapping[str, Any] | None, train_ids: Sequence[str]
    ) -> dict[str, Any]:
        """Per-channel ``mean`` / ``std`` (in [0, 1] units) and where they come from: the
        checkpoint started from (its weights were trained on them), ImageNet's (RGB), or the
        training split's own (other bands; ``training.normalization``)."""
        if init_checkpoint is not None and "normalization" in init_checkpoint:
            return dict(init_checkpoint["normalization"])
        choice = self.config.normalization
        if choice == "auto":
            choice = "imagenet" if self.rgb else "dataset"
        if choice == "imagenet":
            if not self.rgb:
                raise ValueError(
                    f"{self.config.stage}: training.normalization is imagenet, but the samples "
                    f"are {describe_bands(self.store.bands)} ({self.store.channels} channels), "
                    "not RGB; use normalization: dataset (or auto)"
                )
            return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "source": "imagenet"}
        started = time.perf_counter()
        # One pass over the training split, on rank 0; the other ranks are given the result.
        stats = band_statistics(self.store, train_ids) if self.rank == 0 else None
        mean, std = distributed.broadcast_object(stats) if self.world > 1 else stats
        self._log(
            "%s: per-band statistics of %d training samples (%.1fs): mean %s, std %s",
            self.config.stage, len(train_ids), time.perf_counter() - started,
            [round(v, 4) for v in mean], [round(v, 4) for v in std],
        )  # fmt: skip
        return {"mean": mean, "std": std, "source": "dataset"}

    def _load_init(self, model: nn.Module, checkpoint: Mapping[str, Any]) -> None:
        previous = model_from_checkpoint(checkpoint)
        got = ModelSpec.from_dict(checkpoint["model_spec"])
        if got != self.spec:
            raise ValueError(
                f"{self.config.stage}: the checkpoint to start from is {got} but this stage "
                f"builds {self.spec}; use the same model parameters in both stages"
            )
        started_bands = checkpoint.get("bands")
        if (None if started_bands is None else tuple(started_bands)) != self.store.bands:
            raise ValueError(
                f"{self.config.stage}: the checkpoint to start from was trained on "
                f"{describe_bands(started_bands)}, these samples are "
                f"{describe_bands(self.store.bands)}; use the same dataset.bands in both stages"
            )
        if list(checkpoint.get("classes", self.classes)) != self.classes:
            raise ValueError(
                f"{self.config.stage}: the checkpoint to start from was trained on classes "
                f"{checkpoint.get('classes')}, this dataset has {self.classes}"
            )
        model.load_state_dict(previous.state_dict())

    def _confusion(self) -> MulticlassConfusionMatrix:
        return MulticlassConfusionMatrix(len(self.classes), ignore_index=self.ignore_index).to(
            self.device
        )

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _forward(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return model(images)

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> StageResult:
        """Train for ``config.epochs`` epochs and return the best weights and the records."""
        config, state = self.config, self.state
        self._log(
            "%s: %s-%s, %d train / %d val samples of %d×%d, %d epochs, device %s%s, precision "
            "%s, EMA %s, EFM %s",
            config.stage, config.arch, config.encoder, len(self.train_loader.dataset),
            self.val_count, *self.image_size, config.epochs, self.device,
            f" × {self.world} processes ({self.batch_size} samples each per step)"
            if self.world > 1 else "",
            self.amp_dtype or "fp32", f"μ={config.ema_decay}" if state.ema else "off",
            config.efm.describe() if config.efm.enabled else "off",
        )  # fmt: skip
        fit_started = time.perf_counter()
        elapsed_before = self._resume()
        self._saved_epoch = state.epoch  # resumed from (0: nothing saved yet)
        for epoch in range(state.epoch + 1, config.epochs + 1):
            started = time.perf_counter()
            if self.sampler is not None:
                self.sampler.set_epoch(epoch)  # a new permutation, the same on every rank
            refreshed = config.efm.is_refresh_epoch(epoch)
            if refreshed:
                self._refresh_efm()
                self._snapshot(epoch)
            if config.efm.update == "step":  # the maps were refreshed by the steps themselves
                refreshed = config.efm.collects_from_steps(epoch)
            lr = state.optimizer.param_groups[0]["lr"]
            train = self._train_epoch(epoch)
            self._sync_buffers()
            val = self._validate()
            self._check_validated(epoch, val["loss"])
            # What was read this epoch must all come from the store the stage started with.
            self.store.check_unchanged(f"the {config.stage} stage's epoch {epoch}")
            if state.scheduler is not None:
                state.scheduler.step()
            state.epoch = epoch
            # training.checkpoint: the best validation epoch, or simply the latest one.
            if val["iou"] > state.best_score or config.checkpoint == "last":
                state.best_score, state.best_epoch = val["iou"], epoch
                state.best_state = {
                    k: v.detach().to("cpu", copy=True)
                    for k, v in state.eval_model.state_dict().items()
                }
            row = {
                "epoch": epoch,
                "lr": lr,
                **{f"train_{k}": v for k, v in train.items()},
                **{f"val_{k}": v for k, v in val.items()},
                "efm_active": config.efm.active(epoch),
                "efm_refreshed": refreshed and config.efm.enabled,
                "steps": self._steps,
                "skipped_steps": self._skipped_steps,
                "seconds": time.perf_counter() - started,
            }
            if self.run_id is not None:  # a resumed stage keeps the ids of earlier runs' epochs
                row["run_id"] = self.run_id
            # Where the epoch ran: a stage resumed on another machine continues with slightly
            # different numbers (floating-point kernels differ), and its rows show from when.
            row["hardware"] = self.hardware
            state.history.append(row)
            self._log(
                "%s epoch %d/%d: train loss %.4f IoU %.3f | val loss %.4f IoU %.3f F1 %.3f "
                "acc %.3f | %.1fs%s",
                config.stage, epoch, config.epochs, row["train_loss"], row["train_iou"],
                row["val_loss"], row["val_iou"], row["val_f1"], row["val_accuracy"],
                row["seconds"], " (EFM refreshed)" if row["efm_refreshed"] else "",
            )  # fmt: skip
            if self.state_file is not None and (
                epoch % config.resume_every == 0 or epoch == config.epochs
            ):
                if self.rank == 0:  # the state is the same on every rank
                    self.state_file.save(
                        self.resume_state(elapsed_before + time.perf_counter() - fit_started)
                    )
                self._saved_epoch = epoch
        result = self._result(elapsed_before + time.perf_counter() - fit_started)
        if self.state_file is not None and self.rank == 0:
            self.state_file.clear()  # finished: a later run of this stage starts afresh
        return result

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (batch-norm statistics) of the model and its EMA.

        DDP keeps the parameters equal, but each rank's last forward updated its own running
        statistics; from here on (validation, the EFM refresh) every rank must use the model
        rank 0 saves.
        """
        if self.world == 1:
            return
        modules = [self.state.model] + ([self.state.ema] if self.state.ema is not None else [])
        for module in modules:
            for buffer in module.buffers():
                if buffer.is_floating_point():
                    torch.distributed.broadcast(buffer.data, src=0)

    def _log(self, message: str, *args: Any) -> None:
        """Log on rank 0 only: the ranks agree on everything logged."""
        if self.rank == 0:
            logger.info(message, *args)

    # -- resume -------------------------------------------------------------------------------
    def _resume(self) -> float:
        """Restore the saved state, if any and allowed; return the training time it had."""
        if self.state_file is None:
            return 0.0
        if not self.config.resume:
            if self.rank == 0:
                if self.state_file.path.exists():
                    logger.info(
                        "%s: resume is off; discarding %s", self.config.stage, self.state_file
                    )
                self.state_file.clear()
            return 0.0
        saved = self.state_file.load()
        if saved is None:
            return 0.0
        if saved.get("key") != self.resume_key:
            changed = differences(saved.get("key") or {}, self.resume_key)
            raise ResumeMismatchError(
                f"{self.config.stage}: {self.state_file.path} holds the state of an interrupted "
                f"run (after epoch {saved.get('epoch')}) with other settings or data: "
                f"{', '.join(changed[:8])} differ. It is not resumed. To start afresh: --params "
                "training.resume.enabled=false (or delete the file); to resume it, run with the "
                "settings and data it had"
            )
        self.load_resume_state(saved)
        self._log(
            "%s: resumed from %s after epoch %d of %d",
            self.config.stage, self.state_file.path, self.state.epoch, self.config.epochs,
        )  # fmt: skip
        return float(saved.get("elapsed", 0.0))

    def resume_state(self, elapsed: float = 0.0) -> dict[str, Any]:
        """Everything that changes while training, and every random state, as plain values and
        tensors (what ``torch.load(weights_only=True)`` reads back)."""
        state = self.state
        transform = self.train_loader.dataset.transform
        numpy_state = np.random.get_state()
        return {
            "key": self.resume_key,
            "epoch": state.epoch,
            "elapsed": elapsed,
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict() if state.scheduler else None,
            "scaler": state.scaler.state_dict() if state.scaler else None,
            "ema": state.ema.state_dict() if state.ema else None,
            "efm_store": state.efm_store.state_dict() if state.efm_store else None,
            "efm_prior": state.efm_prior,
            "best_score": state.best_score,
            "best_epoch": state.best_epoch,
            "best_state": state.best_state,
            "history": state.history,
            "snapshots": [
                {**s, "efm": torch.from_numpy(s["efm"]), "entropy": torch.from_numpy(s["entropy"])}
                for s in state.snapshots
            ],
            "rng": {
                "python": random.getstate(),
                "numpy": (
                    numpy_state[0],
                    torch.from_numpy(numpy_state[1].astype(np.int64)),
                    *numpy_state[2:],
                ),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                # None under DDP: the sampler's order follows from the seed and the epoch.
                "loader": None
                if self.train_loader.generator is None
                else self.train_loader.generator.get_state(),
                "augment": None
                if transform is None
                else {
                    "numpy": transform.random_generator.bit_generator.state,
                    "python": transform.py_random.getstate(),
                },
            },
        }

    def load_resume_state(self, saved: Mapping[str, Any]) -> None:
        """Restore what :meth:`resume_state` saved."""
        state = self.state
        state.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        if state.scheduler is not None:
            state.scheduler.load_state_dict(saved["scheduler"])
        if state.scaler is not None:
            state.scaler.load_state_dict(saved["scaler"])
        if state.ema is not None:
            state.ema.load_state_dict(saved["ema"])
        if state.efm_store is not None:
            state.efm_store.load_state_dict(saved["efm_store"])
        prior = saved["efm_prior"]
        state.efm_prior = None if prior is None else prior.to(self.device)
        state.epoch = int(saved["epoch"])
        state.best_score = float(saved["best_score"])
        state.best_epoch = int(saved["best_epoch"])
        state.best_state = saved["best_state"]
        state.history = [dict(row) for row in saved["history"]]
        state.snapshots = [
            {**s, "efm": s["efm"].numpy(), "entropy": s["entropy"].numpy()}
            for s in saved["snapshots"]
        ]
        rng = saved["rng"]
        random.setstate(rng["python"])
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if self.train_loader.generator is not None and rng["loader"] is not None:
            self.train_loader.generator.set_state(rng["loader"])
        transform = self.train_loader.dataset.transform
        if transform is not None and rng["augment"] is not None:
            if self.rank == 0:
                transform.random_generator.bit_generator.state = rng["augment"]["numpy"]
                transform.py_random.setstate(rng["augment"]["python"])
            else:  # only rank 0's streams are saved: the others start anew, their own
                reseed_transform(transform, self._augment_seed() + state.epoch)

    def _warm_up(self, epoch: int) -> None:
        """Set the EFM loss's focus strength and top-k ratio for ``epoch`` (training.efm.
        warmup_epochs): from 0 and 1.0 (all pixels) towards the configured values."""
        strength = self.config.efm.strength(epoch)
        alpha_f = self.config.loss.get("alpha_f", DEFAULT_ALPHA_F)
        topk = self.config.loss.get("topk_ratio", DEFAULT_TOPK_RATIO)
        self.criterion.alpha_f = strength * alpha_f
        self.criterion.topk_ratio = 1.0 - strength * (1.0 - topk)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        config, state = self.config, self.state
        state.model.train()
        confusion = self._confusion()
        use_efm = config.efm.active(epoch)
        if use_efm:
            self._warm_up(epoch)
        collect = config.efm.collects_from_steps(epoch)
        total, batches = 0.0, 0
        self._skipped_steps = 0
        progress = tqdm(
            self.train_loader,
            desc=f"{config.stage} epoch {epoch}/{config.epochs}",
            leave=False,
            disable=not sys.stderr.isatty() or self.rank != 0,
        )
        for number, batch in enumerate(progress, start=1):
            images = batch["image"].to(self.device, non_blocking=True)
            masks = batch["mask"].to(self.device, non_blocking=True)
            logits = self._forward(self.train_model, images)
            efm = self._batch_efm(batch, logits, masks) if use_efm else None
            loss = self.criterion(logits, masks, efm)
            if collect:
                self._store_step_efm(batch, logits, masks)
            try:
                stepped = self._step(loss)
            except _NonFinite as fault:
                raise self._fault(fault.what, epoch, number, batch) from None
            if not stepped:  # fp16: the scaler skipped a step with inf/NaN gradients
                self._skipped_steps += 1
                continue
            total += float(loss.detach())
            batches += 1
            confusion.update(logits.detach().max(dim=1).indices, masks)
            progress.set_postfix(loss=f"{total / batches:.4f}")
        # The epoch's mean loss over every rank's batches (the confusion matrix is summed over
        # the ranks by torchmetrics when it is computed).
        self._steps = batches
        total, batches = (float(v) for v in self._sum([total, batches]))
        batches = int(batches)
        if self._skipped_steps:
            if not batches:
                raise self._fault("loss at every gradient scale", epoch, None, None)
            logger.warning(
                "%s epoch %d: the fp16 gradient scaler skipped %d of %d steps (inf/NaN "
                "gradients at the current scale)",
                config.stage, epoch, self._skipped_steps, self._skipped_steps + batches,
            )  # fmt: skip
        return {"loss": total / max(batches, 1), **epoch_scores(confusion.compute())}

    def _fault(
        self, what: str, epoch: int, number: int | None, batch: Mapping[str, Any] | None
    ) -> NumericFaultError:
        """The error for a non-finite ``what``; nothing from the faulty step was applied."""
        config = self.config
        where = f"epoch {epoch}"
        if number is not None:
            where += f", batch {number} of {len(self.train_loader)}"
        if batch is not None and "index" in batch:
            ids = self.train_loader.dataset.ids
            where += f" (samples {', '.join(ids[int(i)] for i in batch['index'])})"
        saved = self._saved_epoch
        if self.state_file is None:
            resume = "This run keeps no resumable state."
        elif saved:
            resume = (
                f"The state after epoch {saved} is saved in {self.state_file.path}: the same "
                "command resumes from there (and passes if the fault was transient)."
            )
        else:
            resume = "No epoch had completed, so there is no state to resume from."
        return NumericFaultError(
            f"{config.stage}: the {what} became NaN or infinite in {where}; the step was not "
            f"taken and nothing was saved from it. {resume} Usual causes: a learning rate too "
            f"high (training.optimizer.lr = {config.lr}), no gradient clipping "
            f"(training.grad_clip = {config.grad_clip}), or bad values in those samples. After "
            "changing a setting, start afresh with --params training.resume.enabled=false"
        )

    def _check_validated(self, epoch: int, val_loss: float) -> None:
        """Stop before a non-finite model can be kept as the best or saved as a checkpoint."""
        model = self.state.eval_model
        bad = [
            name
            for name, tensor in model.state_dict().items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        ]
        if bad:
            raise self._fault(f"validated weights ({', '.join(bad[:3])})", epoch, None, None)
        if not math.isfinite(val_loss):
            raise self._fault("validation loss", epoch, None, None)

    def _batch_efm(
        self, batch: Mapping[str, torch.Tensor], logits: torch.Tensor, masks: torch.Tensor
    ) -> torch.Tensor | None:
        source = self.config.efm.source
        if source == "per_sample":
            return batch["efm"].to(self.device, non_blocking=True)
        if source == "online":
            probs = logits.detach().float().softmax(dim=1)
            return fingerprint_map(
                probs, masks, ignore_index=self.ignore_index, **self.config.efm_map
            )
        prior = self.state.efm_prior
        if prior is None:
            return None
        # Like the other sources' maps, zero where nothing is scored.
        return torch.where(masks != self.ignore_index, prior, 0.0)

    def _step(self, loss: torch.Tensor) -> bool:
        """Back-propagate ``loss`` and take one optimiser step (and EMA update).

        Returns False where the fp16 gradient scaler skipped the step (inf/NaN gradients at its
        current scale, which it then lowers). Without a scaler a non-finite loss or gradient
        raises :class:`_NonFinite` before the weights change.
        """
        state, clip = self.state, self.config.grad_clip
        state.optimizer.zero_grad(set_to_none=True)
        parameters = [p for p in state.model.parameters() if p.requires_grad]
        if state.scaler is not None:
            scale = state.scaler.get_scale()
            state.scaler.scale(loss).backward()
            state.scaler.unscale_(state.optimizer)
            if clip:
                nn.utils.clip_grad_norm_(parameters, clip)
            state.scaler.step(state.optimizer)
            state.scaler.update()
            if state.scaler.get_scale() < scale:  # lowered: this step was skipped
                return False
        else:
            finite = bool(torch.isfinite(loss.detach()))
            if self.world > 1:  # every rank stops together, or none does
                finite = self._sum([0.0 if finite else 1.0])[0] == 0
            if not finite:
                raise _NonFinite("loss")
            loss.backward()
            grads = [p.grad for p in parameters if p.grad is not None]
            norm = (
                nn.utils.clip_grad_norm_(parameters, clip)
                if clip
                else nn.utils.get_total_norm(grads)
            )
            if not bool(torch.isfinite(norm)):
                raise _NonFinite("gradient")
            state.optimizer.step()
        if state.ema is not None:
            state.ema.update_parameters(state.model)
        return True

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        model = self.state.eval_model
        model.eval()
        confusion = self._confusion()
        total, pixels = 0.0, 0
        for batch in self.val_loader:
            images = batch["image"].to(self.device, non_blocking=True)
            masks = batch["mask"].to(self.device, non_blocking=True)
            logits = self._forward(model, images)
            # Weighted by batch size so that a smaller last batch counts for what it is.
            total += float(self.baseline_criterion(logits, masks)) * masks.shape[0]
            pixels += masks.shape[0]
            confusion.update(logits.max(dim=1).indices, masks)
        total, pixels = self._sum([total, pixels])  # over the ranks' shares
        return {"loss": total / max(pixels, 1), **epoch_scores(confusion.compute())}

    def _fit_temperature(self, model: nn.Module) -> tuple[float, dict[str, float]]:
        """The temperature minimising the validation NLL of ``model`` (every rank the same: the
        whole validation split), and the NLL before and after."""
        model.eval()
        logits, labels = collect_logits(
            lambda images: self._forward(model, images),
            self.full_val_loader,
            self.device,
            self.ignore_index,
        )
        temperature = fit_temperature(logits, labels)
        return temperature, {
            "val_nll": nll(logits, labels),
            "val_nll_scaled": nll(logits, labels, temperature),
        }

    def _max(self, value: float) -> float:
        """The largest ``value`` over the ranks."""
        tensor = torch.tensor([value], dtype=torch.float64, device=self._comm_device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return float(tensor)

    def _sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over the ranks (themselves on one process)."""
        if self.world == 1:
            return [float(v) for v in values]
        summed = distributed.all_reduce_sum(
            torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        )
        return summed.tolist()

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    # -- EFM ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _fingerprints(self, loader: DataLoader, model: nn.Module):
        """Yield ``(batch, probs, efm)`` for every batch of ``loader`` (no augmentation)."""
        model.eval()
        for batch in loader:
            images = batch["image"].to(self.device, non_blocking=True)
            masks = batch["mask"].to(self.device, non_blocking=True)
            probs = self._forward(model, images).float().softmax(dim=1)
            efm = fingerprint_map(
                probs, masks, ignore_index=self.ignore_index, **self.config.efm_map
            )
            yield batch, probs, efm

    @torch.no_grad()
    def _store_step_efm(
        self, batch: Mapping[str, Any], logits: torch.Tensor, masks: torch.Tensor
    ) -> None:
        """``update: step``: keep each sample's EFM from this forward pass, turned back to the
        sample's own orientation, for the next time it is drawn (no extra pass)."""
        probs = logits.detach().float().softmax(dim=1)
        efm = fingerprint_map(probs, masks, ignore_index=self.ignore_index, **self.config.efm_map)
        keys = [int(key) for key in batch["dihedral"]]
        if any(keys):
            efm = torch.stack([undo_dihedral(m, key) for m, key in zip(efm, keys, strict=True)])
        self._update_store(batch["index"], efm)

    def _update_store(self, indices: torch.Tensor, efm: torch.Tensor) -> None:
        """Store a batch's maps; under DDP every rank stores every rank's, so the per-sample
        stores stay identical (a sample's map is computed on one rank, then shared)."""
        if self.world > 1:
            quantised = (efm.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
            device = self._comm_device
            rows = distributed.all_gather_rows(torch.as_tensor(indices).to(device, torch.int64))
            maps = distributed.all_gather_rows(quantised.to(device))
            indices, efm = rows.cpu(), maps.float() / 255
        self.state.efm_store.update(indices, efm)

    def _refresh_efm(self) -> None:
        """Recompute the EFM the loss uses, from the current training weights (§2.3 step 3)."""
        config, state = self.config, self.state
        if not config.efm.enabled or config.efm.source == "online":
            return
        if config.efm.update == "step":  # filled by the training steps themselves
            return
        if config.efm.source == "per_sample":
            batches = self._fingerprints(self.train_eval_loader, state.model)
            # Under DDP the ranks gather batch by batch, so each must take part as often as
            # the rank with the most batches (rank 0: shares differ by one sample at most).
            rounds = len(self.train_eval_loader)
            if self.world > 1:
                rounds = int(self._max(rounds))
            empty = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, *self.image_size))
            for _ in range(rounds):
                batch, _, efm = next(batches, ({"index": empty[0]}, None, empty[1]))
                self._update_store(batch["index"], efm.to(self.device))
        else:  # validation_prior: the mean validation EFM, a spatial prior for every image
            total = torch.zeros(self.image_size, dtype=torch.float64, device=self.device)
            count = 0
            for _, _, efm in self._fingerprints(self.val_loader, state.model):
                total += efm.sum(dim=0).double()
                count += efm.shape[0]
            if self.world > 1:  # the mean over every rank's share
                total = distributed.all_reduce_sum(total.to(self._comm_device)).to(self.device)
                count = int(self._sum([count])[0])
            state.efm_prior = (total / count).float()
        state.model.train()

    def _snapshot(self, epoch: int) -> None:
        """Keep the EFM and entropy of the fixed validation images for the report (Figs. 4-7)."""
        if self.snapshot_loader is None or self.rank != 0:  # rank 0 writes the outputs
            return
        efms, entropies = [], []
        for _, probs, efm in self._fingerprints(self.snapshot_loader, self.state.model):
            efms.append((efm * 255).round().to(torch.uint8).cpu())
            entropies.append(entropy_map(probs).to(torch.float16).cpu())
        self.state.snapshots.append(
            {
                "epoch": epoch,
                "efm": torch.cat(efms).numpy(),
                "entropy": torch.cat(entropies).numpy(),
            }
        )
        self.state.model.train()

    # -- outputs --------------------------------------------------------------------------------
    def _result(self, seconds: float) -> StageResult:
        state, config = self.state, self.config
        best_model = copy.deepcopy(state.eval_model)
        best_model.load_state_dict(state.best_state)
        best = next(r for r in state.history if r["epoch"] == state.best_epoch)
        temperature, calibration = self._fit_temperature(best_model)
        checkpoint = make_checkpoint(
            best_model,
            self.spec,
            stage=config.stage,
            classes=self.classes,
            ignore_index=self.ignore_index,
            image_size=list(self.image_size),
            # What predict and evaluation feed the model: the same bands, normalised alike.
            bands=None if self.store.bands is None else list(self.store.bands),
            normalization=self.normalization,
            # Ground size of a pixel of the training samples (cm), when georeferenced.
            resolution_cm=self.store.resolution_cm,
            epoch=state.best_epoch,
            metrics={k: float(v) for k, v in best.items() if k.startswith("val_")},
            ema=state.ema is not None,
            config=config.record(),
            # What actually ran, where the configuration says "auto".
            device=str(self.device),
            precision={torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.amp_dtype, "fp32"),
            epochs_run=len(state.history),
            train_seconds=round(seconds, 3),
            # Post-hoc temperature scaling, fitted on the whole validation split.
            temperature=temperature,
            calibration=calibration,
        )
        height, width = self.image_size
        n = len(self.snapshot_ids)
        snapshots = {
            "epochs": np.array([s["epoch"] for s in state.snapshots], dtype=np.int64),
            "ids": np.array(self.snapshot_ids, dtype=str),
            "efm": np.stack([s["efm"] for s in state.snapshots])
            if state.snapshots
            else np.zeros((0, n, height, width), np.uint8),
            "entropy": np.stack([s["entropy"] for s in state.snapshots])
            if state.snapshots
            else np.zeros((0, n, height, width), np.float16),
        }
        return StageResult(checkpoint=checkpoint, history=state.history, snapshots=snapshots)
