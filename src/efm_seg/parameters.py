"""One schema per parameter block, validated by Kedro when a session starts.

Every node that reads a block types it with its schema here (``split: SplitParams``), so Kedro
validates the blocks of the pipelines being run **before any node runs**: a bad split,
training or evaluation value stops ``kedro run`` before ingestion writes a manifest or
preprocessing replaces the store. Messages name the parameter, its value and what is allowed.

Nodes begin with ``Schema.model_validate(value)``: Kedro hands them the validated model, and
the same call turns a plain mapping (a test, a notebook, another framework) into one.

Blocks with a domain object of their own (``dataset`` → :class:`~efm_seg.data.labels.LabelScheme`,
``ingestion`` → :class:`~efm_seg.data.raw.Layout`, ``preprocessing``) keep their mapping form and
validate by building that object, so there is one set of rules for each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

from efm_seg.basics.mappings import deep_merge
from efm_seg.basics.names import EQUAL_BUDGET, MODELS, STAGES
from efm_seg.basics.windows import check_window
from efm_seg.data.labels import LabelScheme
from efm_seg.data.parallel import resolve_workers
from efm_seg.data.raw import Layout
from efm_seg.data.tiling import PreprocessingConfig
from efm_seg.efm.defaults import (
    DEFAULT_ALPHA,
    DEFAULT_ALPHA_F,
    DEFAULT_BETA_F,
    DEFAULT_GAMMA,
    DEFAULT_KERNEL_SIZE,
    DEFAULT_LABEL_SMOOTHING,
    DEFAULT_LAMBDA_CE,
    DEFAULT_LAMBDA_DICE,
    DEFAULT_SIGMA,
    DEFAULT_TOPK_RATIO,
)


class Block(BaseModel):
    """A parameter block: unknown keys are errors, and numbers are not read from strings."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def describe(error: ValidationError, where: str) -> str:
    """One line per problem: ``<where>.<key>: <what is allowed> (got <value>)``."""
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"] if not str(part).startswith("function"))
        name = f"{where}.{key}" if key else where
        got = f" (got {problem['input']!r})" if "input" in problem else ""
        what = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            what = "unknown key: no such parameter (check its spelling and its block)"
        lines.append(f"{name}: {what}{got}")
    return "; ".join(lines)


def check_device(device: str) -> str:
    """``auto``, or a torch device that exists here (torch is imported only to check another)."""
    if device in ("auto", "cpu"):
        return device
    from efm_seg.basics.devices import check_device as check_torch_device

    return check_torch_device(device)


def trains_on_cuda(device: str) -> bool:
    """Whether ``device`` means a CUDA GPU here (``cpu`` without importing torch)."""
    if device == "cpu":
        return False
    from efm_seg.basics.devices import trains_on_cuda as on_cuda

    return on_cuda(device)


Device = Annotated[str, Field(description="auto | cpu | cuda | cuda:N")]
Stage = Literal[STAGES]  # baseline | efm | finetune (efm_seg.basics.names)
Model = Literal[MODELS]  # the stages and baseline_equal: what predict and export may use


# -- efm_method -----------------------------------------------------------------------------
class EFMMapParams(Block):
    """``efm_method.map``: :func:`efm_seg.efm.fingerprint_map` (eqs. 2-5)."""

    alpha: float = Field(DEFAULT_ALPHA, ge=0, le=1)
    sigma: float = Field(DEFAULT_SIGMA, ge=0)


class EFMLossParams(Block):
    """``efm_method.loss``: :class:`efm_seg.efm.EFMLoss` (eqs. 6-11)."""

    lambda_ce: float = Field(DEFAULT_LAMBDA_CE, ge=0)
    lambda_dice: float = Field(DEFAULT_LAMBDA_DICE, ge=0)
    label_smoothing: float = Field(DEFAULT_LABEL_SMOOTHING, ge=0, le=1)
    alpha_f: float = Field(DEFAULT_ALPHA_F, ge=0)
    beta_f: float = Field(DEFAULT_BETA_F, gt=0)
    gamma: float = Field(DEFAULT_GAMMA, ge=0)
    kernel_size: int = Field(DEFAULT_KERNEL_SIZE, ge=1)
    topk_ratio: float = Field(DEFAULT_TOPK_RATIO, gt=0, le=1)
    form: Literal["eq9", "eq7"] = "eq9"

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd (a window centred on the pixel), got {value}")
        return value


class EFMMethodParams(Block):
    """``efm_method``: the method's constants, shared by the EFM stages."""

    map: EFMMapParams = EFMMapParams()
    loss: EFMLossParams = EFMLossParams()


# -- training -------------------------------------------------------------------------------
class ModelParams(Block):
    arch: str = "FPN"
    encoder: str = "resnet34"
    encoder_weights: str | None = None

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        from efm_seg.models import architectures

        known = architectures()
        if value not in known:
            raise ValueError(f"{value!r} is not an smp architecture; use one of {sorted(known)}")
        return value

    @field_validator("encoder_weights")
    @classmethod
    def _random(cls, value: str | None) -> str | None:
        return None if value is None or value.lower() in ("none", "null", "random", "") else value


class OptimizerParams(Block):
    """AdamW."""

    lr: float = Field(gt=0, allow_inf_nan=False)
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)


class EMAParams(Block):
    enabled: bool = False
    decay: float = Field(0.999, ge=0, le=1)


class CriterionParams(Block):
    """``training.criterion``: the loss of a stage trained without EFM (``efm.enabled: false``),
    so that EFM can be compared with what a user would pick instead:

    - ``ce_dice``: the paper's baseline objective, eq. 6 (``efm_method.loss``'s λ and label
      smoothing);
    - ``ohem``: online hard example mining, the per-image top-k mean of the cross-entropy (eq. 11
      without EFM weights), ``topk_ratio`` of each image's pixels;
    - ``focal``: smp's focal loss (``focal_gamma``);
    - ``lovasz``: smp's Lovász-softmax loss.
    """

    name: Literal["ce_dice", "ohem", "focal", "lovasz"] = "ce_dice"
    topk_ratio: float = Field(DEFAULT_TOPK_RATIO, gt=0, le=1)
    focal_gamma: float = Field(2.0, ge=0)


class EFMScheduleParams(Block):
    """``training.efm``: which EFM the loss uses, and when it is recomputed.

    ``update`` (``per_sample`` only): ``refresh``, the paper's no-grad pass over the training set
    every ``every`` epochs from ``start_epoch``; or ``step``, each sample's map taken from its own
    training forward pass (flips and rotations undone) and used the next time it is drawn — no
    extra pass, maps at most one epoch old, collected from the epoch before ``start_epoch``.

    ``warmup_epochs``: over the first N epochs with an EFM, the focus strength ``alpha_f`` rises
    linearly from 0 and the top-k ratio falls from 1.0 (all pixels) to their configured values
    (0: the paper, full strength at once).
    """

    enabled: bool = False
    source: Literal["per_sample", "online", "validation_prior"] = "per_sample"
    update: Literal["refresh", "step"] = "refresh"
    start_epoch: int = Field(5, ge=1)
    every: int = Field(2, ge=1)
    warmup_epochs: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _step_needs_per_sample(self) -> EFMScheduleParams:
        if self.update == "step" and self.source != "per_sample":
            raise ValueError(
                f"update: step fills the per-sample store; with source: {self.source} use "
                "update: refresh (online maps are always the step's own)"
            )
        return self

    # When the EFM is (re)computed (the paper, §2.3 step 3 and §3.3: "every two epochs,
    # starting from the fifth"); before start_epoch the loss runs without an EFM. Epochs count
    # from 1.

    def describe(self) -> str:
        """How the EFM is made, for the log."""
        if self.source == "per_sample" and self.update == "step":
            text = f"per_sample from each training step, used from epoch {self.start_epoch}"
        elif self.source == "online":
            text = f"online from epoch {self.start_epoch}"
        else:
            text = f"{self.source} from epoch {self.start_epoch}, refreshed every {self.every}"
        if self.warmup_epochs:
            text += f", full strength after a {self.warmup_epochs}-epoch warm-up"
        return text

    def collects_from_steps(self, epoch: int) -> bool:
        """Whether ``epoch``'s training steps fill the per-sample store (``update: step``): from
        the epoch before ``start_epoch``, so the maps are ready when the loss first uses them."""
        return (
            self.enabled
            and self.source == "per_sample"
            and self.update == "step"
            and epoch >= self.start_epoch - 1
        )

    def is_refresh_epoch(self, epoch: int) -> bool:
        return epoch >= self.start_epoch and (epoch - self.start_epoch) % self.every == 0

    def active(self, epoch: int) -> bool:
        """Whether the loss uses an EFM in ``epoch``."""
        return self.enabled and epoch >= self.start_epoch

    def strength(self, epoch: int) -> float:
        """The warm-up's fraction of full EFM strength in ``epoch`` (1.0 once warmed up):
        ``k / (warmup_epochs + 1)`` in the k-th epoch with an EFM, so no epoch is a no-op."""
        if not self.active(epoch):
            return 0.0
        return min(1.0, (epoch - self.start_epoch + 1) / (self.warmup_epochs + 1))


class SnapshotParams(Block):
    count: int = Field(4, ge=0)


class ResumeParams(Block):
    """``training.resume``: continue a stage killed mid-way from its last saved epoch."""

    enabled: bool = True
    every: int = Field(1, ge=1)


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``(host, port)`` of a ``host:port`` endpoint (an IPv6 host in brackets: ``[::1]:29500``).

    Raises:
        ValueError: When ``endpoint`` is not ``host:port`` with a port in 0..65535.
    """
    host, sep, port_text = endpoint.rpartition(":") if isinstance(endpoint, str) else ("", "", "")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.strip().isdigit() or int(port_text) > 65535:
        raise ValueError(
            "rdzv_endpoint must be 'host:port' with a port in 0..65535 (0: any free port, "
            f"single node only), got {endpoint!r}"
        )
    return host, int(port_text)


class DistributedParams(Block):
    """``training.distributed``: data-parallel training on several processes (PyTorch DDP),
    launched by torch's elastic launcher from inside the training node.

    ``nproc_per_node`` worker processes on each of ``nnodes`` nodes (one per GPU with NCCL),
    meeting at ``rdzv_endpoint`` (``host:port`` every node reaches; port 0 picks a free one, on
    a single node only) under the job id ``rdzv_id``. ``backend``: ``auto`` is NCCL when
    training on CUDA, gloo otherwise. ``timeout``: seconds a collective waits for the other
    ranks, so that a rank that died or took another path fails the run instead of hanging it.
    ``max_restarts``: how often the launcher restarts the whole worker group after a failure;
    ``monitor_interval``: seconds between its checks on its workers.
    """

    nproc_per_node: int = Field(1, ge=1)
    nnodes: int = Field(1, ge=1)
    rdzv_endpoint: str = "127.0.0.1:0"
    rdzv_backend: Literal["c10d", "etcd", "etcd-v2"] = "c10d"
    rdzv_id: str = Field("efm-seg", min_length=1, pattern=r"\S")
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    sync_batchnorm: bool = False
    timeout: float = Field(1800.0, gt=0, allow_inf_nan=False)
    max_restarts: int = Field(0, ge=0)
    monitor_interval: float = Field(0.1, gt=0, allow_inf_nan=False)

    @property
    def world_size(self) -> int:
        """Worker processes over all nodes."""
        return self.nproc_per_node * self.nnodes

    @property
    def enabled(self) -> bool:
        """Whether training is distributed at all (more than one process)."""
        return self.world_size > 1

    @model_validator(mode="after")
    def _endpoint(self) -> DistributedParams:
        _, port = parse_endpoint(self.rdzv_endpoint)
        if self.nnodes > 1 and port == 0:
            raise ValueError(
                f"rdzv_endpoint needs a fixed port when nnodes > 1 (got {self.rdzv_endpoint!r} "
                f"with nnodes={self.nnodes}): every node must reach the same host:port, so port "
                "0 (any free port) cannot be used; e.g. 'node0:29500'"
            )
        return self


class TrainingParams(Block):
    """``training``: the recipe the three stages share (each merges its overrides in)."""

    model: ModelParams = ModelParams()
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    optimizer: OptimizerParams
    scheduler: Literal["cosine", "none"] = "cosine"
    grad_clip: float | None = Field(None, ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    ema: EMAParams = EMAParams()
    device: Device = "auto"
    seed: int = Field(0, ge=0)
    num_workers: int = Field(0, ge=0)
    augment: dict[str, Any] = Field(default_factory=dict)
    efm: EFMScheduleParams = EFMScheduleParams()
    snapshots: SnapshotParams = SnapshotParams()
    init_from: Literal["previous"] | None = None
    resume: ResumeParams = ResumeParams()
    normalization: Literal["auto", "imagenet", "dataset"] = "auto"
    distributed: DistributedParams = DistributedParams()
    criterion: CriterionParams = CriterionParams()
    checkpoint: Literal["best", "last"] = "best"

    @field_validator("scheduler", mode="before")
    @classmethod
    def _no_scheduler(cls, value: Any) -> Any:
        return "none" if value is None else value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device(value)

    @model_validator(mode="after")
    def _criterion_without_efm(self) -> TrainingParams:
        if self.efm.enabled and self.criterion.name != "ce_dice":
            raise ValueError(
                f"criterion.name: {self.criterion.name} is the loss of a stage trained without "
                "EFM, and this stage has efm.enabled: true (its loss is eq. 10, efm_method.loss); "
                "set the criterion in the overrides of the stages without EFM (e.g. "
                "baseline.overrides) rather than in the shared training block"
            )
        return self

    @model_validator(mode="after")
    def _fp16_needs_cuda(self) -> TrainingParams:
        if self.precision == "fp16" and not trains_on_cuda(self.device):
            raise ValueError(
                f"precision: fp16 needs a CUDA device, and this run trains on the CPU (device "
                f"{self.device!r}); use bf16 or fp32, or auto"
            )
        return self

    @model_validator(mode="after")
    def _global_batch(self) -> TrainingParams:
        world = self.distributed.world_size
        if self.batch_size % world:
            raise ValueError(
                f"batch_size: {self.batch_size} is the global batch, shared by the "
                f"{world} processes of distributed (nproc_per_node × nnodes); make it a "
                "multiple of them"
            )
        if world > 1 and self.distributed.sync_batchnorm and not trains_on_cuda(self.device):
            raise ValueError(
                "distributed.sync_batchnorm: torch's SyncBatchNorm works on CUDA only, and this "
                f"run trains on the CPU (device {self.device!r}); set it to false"
            )
        if world > 1 and self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(
                f"device: {self.device!r} names one device, but distributed training runs "
                f"{self.distributed.nproc_per_node} processes per node, each on cuda:<local "
                "rank>; use auto, cuda or cpu"
            )
        return self

    @field_validator("augment")
    @classmethod
    def _augment(cls, value: dict[str, Any]) -> dict[str, Any]:
        from efm_seg.loading import build_transforms

        build_transforms(value, seed=0)  # raises naming augment.<key>
        return value


_OVERRIDE_REFERENCE = {"epochs": 1, "batch_size": 1, "optimizer": {"lr": 1.0}}
"""A complete recipe for checking a stage's overrides on their own, before they meet
``training``: every value the overrides give is checked against the schema."""


class StageOverrides(RootModel[dict[str, Any]]):
    """``<stage>.overrides``: what one stage changes in ``training`` (any subset of its keys)."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _check(self) -> StageOverrides:
        if not isinstance(self.root, Mapping):
            raise ValueError(f"must be a mapping of training keys, got {self.root!r}")
        TrainingParams.model_validate(deep_merge(_OVERRIDE_REFERENCE, self.root))
        return self


def stage_recipe(training: Any, overrides: Any) -> TrainingParams:
    """``training`` with a stage's ``overrides`` merged in, validated as a whole."""
    base = TrainingParams.model_validate(training).model_dump()
    changes = StageOverrides.model_validate(overrides or {}).root
    return TrainingParams.model_validate(deep_merge(base, changes))


def equal_budget_overrides(
    training: Any, stages: Mapping[str, Any], overrides: Any
) -> dict[str, Any]:
    """``baseline_equal.overrides`` as trained: the baseline's overrides, for the epochs of the
    three stages together (each stage's ``overrides.epochs``, else ``training.epochs``), then
    what ``baseline_equal.overrides`` changes besides.

    Args:
        training: ``params:training``.
        stages: ``params:<stage>.overrides`` of ``baseline``, ``efm`` and ``finetune``.
        overrides: ``params:baseline_equal.overrides``; it may not set ``epochs``.

    Raises:
        ValueError: ``epochs`` is set, naming the parameter.
    """
    own = StageOverrides.model_validate(overrides or {}).root
    if "epochs" in own:
        raise ValueError(
            f"{EQUAL_BUDGET}.overrides.epochs is set ({own['epochs']!r}), but the equal-budget "
            "baseline trains as many epochs as the three stages together; set the stages' epochs "
            "(<stage>.overrides.epochs) instead"
        )
    epochs = sum(stage_recipe(training, stages.get(stage)).epochs for stage in STAGES)
    baseline = StageOverrides.model_validate(stages.get("baseline") or {}).root
    return deep_merge(deep_merge(baseline, {"epochs": epochs}), own)


# -- study ----------------------------------------------------------------------------------
PROJECT_SPLIT = "split"
"""The study's fold when ``study.folds`` is empty: the project's own split (``split``)."""

STUDY_BASELINES = ("baseline", EQUAL_BUDGET)
"""The study's two baselines: the paper's baseline stage alone, and the same recipe trained for
as many epochs as baseline + EFM + fine-tuning together (the equal-budget reference)."""


class StudyEpochs(Block):
    """``study.epochs``: the stages' epochs (the paper's proportions, shortened to taste)."""

    baseline: int = Field(ge=1)
    efm: int = Field(ge=1)
    finetune: int = Field(ge=1)

    @property
    def total(self) -> int:
        return self.baseline + self.efm + self.finetune


class StudyConvergence(Block):
    """``study.convergence``: when the equal-budget reference counts as trained to a plateau.

    A comparison at an equal budget means little if the reference was still improving when it
    stopped. A fold **fails** when its reference runs gained, on average over their seeds,
    ``tolerance`` validation IoU or more over their last ``last_fraction`` of epochs; the study
    **has converged** when at most ``failing_folds`` folds fail. Reported, never enforced: the
    study's tables say which folds fail, and the log warns.
    """

    last_fraction: float = Field(0.2, gt=0, lt=1)
    tolerance: float = Field(0.005, ge=0)
    failing_folds: int = Field(0, ge=0)


class StudyVariant(Block):
    """One variant of ``study.variants``: what it changes against the paper's recipe.

    ``efm_method`` is merged into ``efm_method``; ``training`` into both EFM stages' recipes
    (after their own ``<stage>.overrides``); ``efm`` and ``finetune`` into that stage only.

    With ``single_run: true`` the variant is one uninterrupted run instead, trained exactly as
    the equal-budget baseline (the baseline stage's recipe for the three stages' epochs
    together) with ``training`` and ``efm_method`` merged in: EFM as the paper's §2.3 algorithm
    (``training: {efm: {enabled: true}}``), or another loss (``training: {criterion: ...}``).
    """

    description: str = ""
    single_run: bool = False
    efm_method: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    efm: dict[str, Any] = Field(default_factory=dict)
    finetune: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_run_has_no_stages(self) -> StudyVariant:
        if self.single_run and (self.efm or self.finetune):
            raise ValueError(
                "single_run: a variant trained as one run has no efm or finetune stage to "
                "change; put its changes under training"
            )
        return self

    @field_validator("efm_method")
    @classmethod
    def _method(cls, value: dict[str, Any]) -> dict[str, Any]:
        EFMMethodParams.model_validate(value)
        return value

    @field_validator("training", "efm", "finetune")
    @classmethod
    def _overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        StageOverrides.model_validate(value)
        return value


class StudyExtraSeeds(Block):
    """``study.extra_seeds``: more seeds for some runs only.

    A comparison's power grows with its pairs; when the paired differences spread more than
    planned, the runs a question turns on can train more seeds without the whole grid doing so.
    Each run in ``runs`` trains ``study.seeds`` and then ``seeds``; every other run trains
    ``study.seeds``. A run is compared with the equal-budget baseline on the folds and seeds both
    trained, so ``runs`` must include ``baseline_equal``, and ``baseline`` when a three-stage
    variant is listed (its EFM stage follows the seed's baseline stage).
    """

    seeds: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    runs: list[str] = Field(min_length=1)

    @field_validator("seeds", "runs")
    @classmethod
    def _once(cls, value: list[Any]) -> list[Any]:
        twice = sorted({item for item in value if value.count(item) > 1}, key=str)
        if twice:
            raise ValueError(f"lists {', '.join(map(str, twice))} twice: {value}")
        return value


class StudyParams(Block):
    """``study``: the grid of the ``study`` pipeline (architectures × folds × seeds × variants).

    Every architecture, fold and seed trains both baselines (``baseline``, ``baseline_equal``)
    and every variant (an EFM stage, then fine-tuning from its best checkpoint, or one run).
    ``folds`` are splits given outright, each as ``split.predefined`` patterns (glob of a group
    or source image -> ``val`` or ``test``) with every other sample in train, e.g. leave one
    tile out; without folds the study trains and scores on the project's ``split`` (the fold
    ``split``). ``overrides``
    changes the paper's stage recipes for the whole study (e.g. an earlier EFM start when the
    epochs are shortened); ``confidence`` is the level of the paired differences' intervals;
    ``convergence`` is the rule by which the reference counts as trained to a plateau
    (:class:`StudyConvergence`); ``extra_seeds`` trains some runs on more seeds than
    ``seeds`` (:class:`StudyExtraSeeds`).
    """

    architectures: list[str] = Field(min_length=1)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    folds: dict[str, dict[str, Literal["train", "val", "test"]]] = Field(default_factory=dict)
    epochs: StudyEpochs
    variants: dict[str, StudyVariant] = Field(min_length=1)
    overrides: dict[Stage, dict[str, Any]] = Field(default_factory=dict)
    tta: bool = True
    confidence: float = Field(0.95, gt=0, lt=1)
    convergence: StudyConvergence = Field(default_factory=StudyConvergence)
    extra_seeds: StudyExtraSeeds | None = None

    @field_validator("architectures")
    @classmethod
    def _architectures(cls, value: list[str]) -> list[str]:
        for arch in value:
            ModelParams(arch=arch)
        if len(set(value)) != len(value):
            raise ValueError(f"lists an architecture twice: {value}")
        return value

    @field_validator("overrides")
    @classmethod
    def _stage_overrides(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for changes in value.values():
            StageOverrides.model_validate(changes)
        return value

    @field_validator("folds")
    @classmethod
    def _folds(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, patterns in value.items():
            if name == PROJECT_SPLIT or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(
                    f"{name!r}: a fold name is lower-case letters, digits and underscores, and "
                    f"not {PROJECT_SPLIT!r} (the project's own split)"
                )
            missing = [split for split in ("val", "test") if split not in patterns.values()]
            if missing:
                raise ValueError(
                    f"fold {name!r} names no {' and no '.join(missing)} group: each fold needs "
                    "a validation and a test group (the rest trains)"
                )
        return value

    @property
    def fold_names(self) -> list[str]:
        """The folds' names, or the project's split alone (``split``) when none are set."""
        return list(self.folds) or [PROJECT_SPLIT]

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a seed twice: {value}")
        return value

    @field_validator("variants")
    @classmethod
    def _names(cls, value: dict[str, StudyVariant]) -> dict[str, StudyVariant]:
        for name in value:
            if name in STUDY_BASELINES:
                raise ValueError(f"{name!r} is the name of a baseline the study always runs")
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(
                    f"{name!r}: a variant name is lower-case letters, digits and underscores "
                    "(it names catalog entries and folders)"
                )
        return value

    @model_validator(mode="after")
    def _extra_seeds(self) -> StudyParams:
        extra = self.extra_seeds
        if extra is None:
            return self
        again = [seed for seed in extra.seeds if seed in self.seeds]
        if again:
            raise ValueError(
                f"extra_seeds.seeds: {again} already in study.seeds {self.seeds} (every run "
                "trains those); extra seeds are the ones only some runs train"
            )
        runs = [*STUDY_BASELINES, *self.variants]
        unknown = [run for run in extra.runs if run not in runs]
        if unknown:
            raise ValueError(
                f"extra_seeds.runs: {', '.join(unknown)} is not a run of the study (its runs: "
                f"{', '.join(runs)})"
            )
        if EQUAL_BUDGET not in extra.runs:
            raise ValueError(
                f"extra_seeds.runs: every run is compared with {EQUAL_BUDGET} on the same fold "
                f"and seed, so the extra seeds must train it too: add {EQUAL_BUDGET}"
            )
        staged = [
            run for run in extra.runs
            if run in self.variants and not self.variants[run].single_run
        ]  # fmt: skip
        if staged and STUDY_BASELINES[0] not in extra.runs:
            raise ValueError(
                f"extra_seeds.runs: a three-stage run's EFM stage follows its seed's "
                f"{STUDY_BASELINES[0]} stage ({', '.join(staged)}), so the extra seeds must train "
                f"it too: add {STUDY_BASELINES[0]}"
            )
        return self

    def run_seeds(self, run: str) -> list[int]:
        """The seeds ``run`` trains: ``seeds``, then ``extra_seeds.seeds`` if it is listed."""
        extra = self.extra_seeds
        if extra is not None and run in extra.runs:
            return [*self.seeds, *extra.seeds]
        return list(self.seeds)

    @property
    def all_seeds(self) -> list[int]:
        """Every seed some run trains: ``seeds``, then ``extra_seeds.seeds``."""
        return [*self.seeds, *(self.extra_seeds.seeds if self.extra_seeds else [])]


# -- split, evaluation, reporting -----------------------------------------------------------
class SplitFractions(Block):
    train: float = Field(gt=0, le=1)
    val: float = Field(ge=0, le=1)
    test: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(
                f"train {self.train:g}, val {self.val:g}, test {self.test:g} sum to {total:g}, "
                "not 1 (the paper: 0.8 / 0.1 / 0.1, test carved from the 20% validation)"
            )
        return self


class SplitParams(Block):
    """``split``: fractions, seed, what a group is, and the samples whose split is given."""

    fractions: SplitFractions
    seed: int = Field(0, ge=0)
    group_by: Literal["group", "source"] = "group"
    # Glob pattern of a group or source image -> its split (an official split, a held-out area).
    predefined: dict[str, Literal["train", "val", "test"]] = Field(default_factory=dict)
    # Where the samples no pattern names go: the stratified assignment, or all to train.
    rest: Literal["stratified", "train"] = "stratified"


class BoundaryParams(Block):
    dilation_ratio: float = Field(0.02, ge=0, allow_inf_nan=False)
    pixels: int | None = Field(None, ge=1)


class QualitativeParams(Block):
    count: int = Field(4, ge=0)


class EvaluationParams(Block):
    """``evaluation``: the split scored, the metrics' settings and TTA."""

    split: Literal["train", "val", "test"] = "test"
    batch_size: int = Field(8, ge=1)
    device: Device = "auto"
    tta: bool = True
    boundary: BoundaryParams = BoundaryParams()
    calibration_bins: int = Field(15, ge=1)
    qualitative: QualitativeParams = QualitativeParams()

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device(value)


class PredictParams(Block):
    """``predict``: the checkpoint's stage and the sliding window (efm_seg.inference)."""

    stage: Model = "finetune"
    window: int = Field(512, ge=32)
    overlap: int = Field(64, ge=0)
    tta: bool = False
    batch_size: int = Field(4, ge=1)
    device: Device = "auto"
    overlay_alpha: float = Field(0.5, ge=0, le=1)
    # The value of a band that marks nodata in scenes whose files mark none (no nodata value,
    # alpha band or mask): a pixel is nodata where every band has it. null: every pixel is data.
    nodata: float | None = None
    # The previews (<stem>.png, <stem>_overlay.jpg) at most this many pixels on their longer
    # side: a GeoTIFF's full-resolution map is its <stem>_ids.tif (0: previews at full size).
    preview_size: int = Field(4096, ge=0)
    # Also write each pixel's confidence (<stem>_confidence.tif or .png): the top class's
    # probability after the checkpoint's temperature scaling, in percent (255: nodata).
    confidence: bool = False

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device(value)

    @model_validator(mode="after")
    def _window(self) -> PredictParams:
        check_window(self.window, self.overlap)
        return self


class ExportParams(Block):
    """``export``: the stage whose model is exported, and the tiling a GIS tool should use."""

    stage: Model = "finetune"
    tiles_size: int = Field(512, ge=32)
    tiles_overlap: int = Field(64, ge=0)
    resolution: float | None = Field(None, gt=0)  # cm per pixel of the training imagery

    @model_validator(mode="after")
    def _overlap(self) -> ExportParams:
        check_window(self.tiles_size, self.tiles_overlap)
        return self


class ReportingParams(Block):
    title: str = "efm-seg run"
    dpi: int = Field(110, ge=20, le=600)


# -- blocks validated by their domain objects -----------------------------------------------
class DatasetParams(RootModel[dict[str, Any]]):
    """``dataset``: the label scheme, checked by building it (see ``LabelScheme``)."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _check(self) -> DatasetParams:
        LabelScheme.from_params(self.root)
        return self


class IngestionParams(RootModel[dict[str, Any]]):
    """``ingestion``: the path templates and workers, checked by building the layout."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _check(self) -> IngestionParams:
        Layout.from_params({k: v for k, v in self.root.items() if k != "workers"})
        resolve_workers(self.root.get("workers", "auto"), 1, "ingestion.workers")
        return self


class PreprocessingParams(RootModel[dict[str, Any]]):
    """``preprocessing``: mode, size, stride, filter and workers."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _check(self) -> PreprocessingParams:
        config = PreprocessingConfig.from_params(self.root)
        resolve_workers(config.workers, 1, "preprocessing.workers")
        return self
