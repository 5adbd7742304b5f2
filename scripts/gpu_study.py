"""The paper-scale comparison on one GPU, in one command (issue 23, item 6).

    .venv/bin/python scripts/gpu_study.py --weights /models/resnet34.pth

The environment ``conf/gpu_study``: the Dubai tiles at 512² (the paper's resize), FPN on
ResNet-34 with its encoder weights from a local file (no download), the paper's 50 / 50 / 15
epochs (115 in one run), EMA 0.999, the last epoch kept; the equal-budget baseline and two
variants; seeds 1–3, on one leave-one-tile-out fold.

Before training, the script times an optimiser step of that model on the device
(:func:`efm_seg.study.budget.measure_step_seconds`), counts the fold's training samples, and
keeps as many seeds as fit ``--budget-minutes`` (:func:`efm_seg.study.budget.plan_study`). It
then runs the study through a ``KedroSession`` and copies its tables, CSVs and figure, the plan
and the measured wall time into ``--out`` (default ``docs/study/<date>-gpu/``), ready to commit.

``--tiny`` is the same script on the CPU at a tiny size (64², ResNet-18, 1 / 1 / 1 epochs, one
seed): what the test suite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Mapping
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = "gpu_study"
STUDY_FILES = (
    "per_seed.csv",
    "summary.csv",
    "paired.csv",
    "per_fold.csv",
    "convergence.csv",
    "convergence.png",
    "tables.md",
    "ablation.png",
)
TINY = {
    "preprocessing": {"size": 64},
    "training": {
        "model": {"encoder": "resnet18"},
        "device": "cpu",
        "num_workers": 0,
        "batch_size": 4,
    },
    "study": {
        "epochs": {"baseline": 1, "efm": 1, "finetune": 1},
        "seeds": [1],
        # EFM from the first epoch, in the EFM stage and the one-run variant alike
        "overrides": {"efm": {"efm": {"start_epoch": 1, "every": 1}}},
        "variants": {"efm_one_run": {"training": {"efm": {"start_epoch": 1, "every": 1}}}},
    },
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", type=Path, required=True,
        help="the encoder's weights, a local file (torchvision or smp ResNet state dict)",
    )  # fmt: skip
    parser.add_argument("--budget-minutes", type=float, default=12.0)
    parser.add_argument("--raw-root", help="the Dubai tiles (default: ../shared/data/dubai_aerial)")
    parser.add_argument("--out", type=Path, help="default: docs/study/<date>-gpu")
    parser.add_argument("--project", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--tiny", action="store_true", help="CPU, 64², 1/1/1 epochs, one seed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if not args.weights.is_file():
        raise SystemExit(f"--weights {args.weights}: no such file (the encoder's local weights)")
    project = args.project.resolve()
    out = (args.out or project / "docs/study" / f"{date.today().isoformat()}-gpu").resolve()
    os.chdir(project)
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")

    import torch
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from efm_seg.basics.mappings import deep_merge

    runtime: dict = {
        "training": {"model": {"encoder_weights": str(args.weights.resolve())}},
        "tracking": {"enabled": False},
    }
    if args.raw_root:
        runtime["raw_root"] = args.raw_root
    if args.tiny:
        runtime = deep_merge(runtime, TINY)
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this study is sized for one (use --tiny to try it on CPU)")

    bootstrap_project(project)

    def run(pipelines: list[str], params: dict) -> None:
        with KedroSession.create(project_path=project, env=ENV, runtime_params=params) as session:
            session.run(pipeline_names=pipelines)

    run(["ingestion", "preprocessing", "split"], runtime)
    plan, device = sized_plan(project, runtime, args.budget_minutes * 60)
    print(json.dumps({"device": device, **plan.as_dict()}, indent=1), flush=True)

    started = time.perf_counter()
    run(["study"], deep_merge(runtime, {"study": planned_seeds(plan)}))
    seconds = time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    study_root = project / "data" / ENV / "08_reporting" / "study"
    for name in STUDY_FILES:
        versions = sorted((study_root / name).iterdir())
        shutil.copy(versions[-1] / name, out / name)
    record = {
        "command": " ".join(["scripts/gpu_study.py", *(argv or sys.argv[1:])]),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "plan": plan.as_dict(),
        "study_seconds": round(seconds, 1),
        "planned_seconds": round(plan.seconds, 1),
    }
    (out / "run.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"study: {seconds / 60:.1f} min (planned {record['planned_seconds'] / 60:.1f}); {out}")
    return record


def planned_seeds(plan) -> dict:
    """The ``study`` changes that train the seeds ``plan`` kept: ``seeds``, and the extra seeds
    that fit (none: ``extra_seeds`` off)."""
    kept: dict = {"seeds": plan.seeds}
    if plan.extra_seeds or plan.dropped_extra_seeds:  # the configuration has extra seeds
        kept["extra_seeds"] = {"seeds": plan.extra_seeds} if plan.extra_seeds else None
    return kept


def sized_plan(project: Path, runtime: dict, budget_seconds: float):
    """The study's plan: a step of its model timed on its device, the first fold's training
    samples, the seeds that fit the budget."""
    import torch
    from kedro.framework.session import KedroSession

    from efm_seg.basics.mappings import as_mapping
    from efm_seg.data.labels import LabelScheme
    from efm_seg.data.split import assign_splits
    from efm_seg.models import ModelSpec
    from efm_seg.parameters import SplitParams, StudyParams, TrainingParams
    from efm_seg.study.budget import measure_step_seconds, plan_study
    from efm_seg.training.config import TrainConfig
    from efm_seg.training.precision import resolve_device, resolve_precision

    with KedroSession.create(project_path=project, env=ENV, runtime_params=runtime) as session:
        context = session.load_context()
        # Blocks as plain mappings (Kedro hands over the validated models of some).
        params = {name: as_mapping(block) for name, block in context.params.items()
                  if isinstance(block, Mapping) or hasattr(block, "model_dump")}  # fmt: skip
        index = context.catalog.load("encoded_index")
    study = StudyParams.model_validate(params["study"])
    training = TrainingParams.model_validate(params["training"])
    scheme = LabelScheme.from_params(params["dataset"])
    bands = params["dataset"].get("bands")
    spec = ModelSpec(
        study.architectures[0], training.model.encoder, num_classes=len(scheme.classes),
        in_channels=len(bands) if bands else 3,
    )  # fmt: skip
    fold = study.folds[study.fold_names[0]] if study.folds else None
    split = SplitParams.model_validate(params["split"])
    table = assign_splits(
        index, split.fractions.model_dump(), seed=split.seed, group_by=split.group_by,
        predefined=fold or split.predefined, rest="train" if fold else split.rest,
    )  # fmt: skip
    train = int((table["split"] == "train").sum())
    config = TrainConfig.from_params(
        "baseline", params["training"], as_mapping(params["baseline"]["overrides"]),
        params["efm_method"],
    )  # fmt: skip
    device = resolve_device(config.device)
    dtype, _ = resolve_precision(config, device)
    step = measure_step_seconds(
        spec, params["preprocessing"]["size"], training.batch_size, device=device, dtype=dtype
    )
    steps = -(-train // training.batch_size)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return plan_study(study, step, steps, budget_seconds), f"{device} ({name or 'cpu'})"


if __name__ == "__main__":
    main()
