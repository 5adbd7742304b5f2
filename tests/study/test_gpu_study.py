"""The GPU study (scripts/gpu_study.py, conf/gpu_study): the paper's scale on the Dubai data as
conf/dubai reads them, sized to its budget from a measured step, and the script itself, run
whole on the CPU at a tiny size."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from efm_seg.framework.config_loader import ProjectConfigLoader
from efm_seg.parameters import StudyParams, TrainingParams
from efm_seg.study.budget import EPOCH_OVERHEAD, epochs_per_seed, measure_step_seconds, plan_study
from tests.conftest import PROJECT_ROOT, latest_version, make_project, requires_shared

CONF = PROJECT_ROOT / "conf"


def loaded(env: str):
    return ProjectConfigLoader(conf_source=str(CONF), base_env="base", env=env)


def test_the_gpu_study_is_the_papers_scale_on_the_dubai_data_as_conf_dubai_reads_them():
    gpu, dubai = loaded("gpu_study"), loaded("dubai")
    assert gpu["catalog"]["raw_dataset"] == dubai["catalog"]["raw_dataset"]
    for block in ("dataset", "ingestion"):
        assert gpu["parameters"][block] == dubai["parameters"][block]
    parameters = gpu["parameters"]
    assert parameters["preprocessing"]["size"] == 512
    recipe = TrainingParams.model_validate(parameters["training"])
    assert (recipe.model.encoder, recipe.model.encoder_weights) == ("resnet34", None)
    assert recipe.checkpoint == "last" and recipe.ema.decay == 0.999
    study = StudyParams.model_validate(parameters["study"])
    assert study.seeds == [1, 2, 3] and len(study.variants) == 2
    assert (study.epochs.baseline, study.epochs.efm, study.epochs.finetune) == (50, 50, 15)
    # baseline 50, equal-budget baseline 115, one-run EFM 115, init_previous 50 + 15
    assert epochs_per_seed(study) == 345


def test_the_plan_keeps_the_seeds_that_fit_the_budget():
    study = StudyParams.model_validate(loaded("gpu_study")["parameters"]["study"])
    per_seed = 345 * 7 * 0.05 * EPOCH_OVERHEAD  # 7 steps an epoch, 50 ms a step: 181 s
    assert plan_study(study, 0.05, 7, 3 * per_seed + 1).seeds == [1, 2, 3]
    two = plan_study(study, 0.05, 7, 2.5 * per_seed)
    assert (two.seeds, two.dropped_seeds) == ([1, 2], [3])
    assert two.seconds_per_seed == pytest.approx(per_seed)
    assert plan_study(study, 0.05, 7, per_seed / 2).seeds == [1]  # over budget: one, said so
    assert two.extra_seeds == two.dropped_extra_seeds == [] and two.seconds == 2 * per_seed


def test_the_plan_keeps_extra_seeds_only_once_every_seed_fits():
    block = loaded("gpu_study")["parameters"]["study"]
    study = StudyParams.model_validate(
        block | {"extra_seeds": {"seeds": [4, 5], "runs": ["baseline_equal", "efm_one_run"]}}
    )
    assert epochs_per_seed(study, 4) == 2 * 115  # the two one-run cells
    staged = StudyParams.model_validate(
        block
        | {"extra_seeds": {"seeds": [4], "runs": ["baseline_equal", "baseline", "init_previous"]}}
    )
    assert epochs_per_seed(staged, 4) == 115 + 50 + 50 + 15  # reference; baseline, EFM, finetune
    per_seed = 345 * 7 * 0.05 * EPOCH_OVERHEAD
    per_extra = 230 * 7 * 0.05 * EPOCH_OVERHEAD
    plan = plan_study(study, 0.05, 7, 3 * per_seed + 1.5 * per_extra)
    assert (plan.seeds, plan.extra_seeds, plan.dropped_extra_seeds) == ([1, 2, 3], [4], [5])
    assert plan.seconds == pytest.approx(3 * per_seed + per_extra)
    short = plan_study(study, 0.05, 7, 2.9 * per_seed)  # room for an extra seed, not a seed
    assert (short.seeds, short.extra_seeds, short.dropped_extra_seeds) == ([1, 2], [], [4, 5])
    over = plan_study(study, 0.05, 7, per_seed / 2)  # not even one seed fits: no extra seed
    assert (over.seeds, over.extra_seeds, over.dropped_extra_seeds) == ([1], [], [4, 5])
    # What the script trains: the kept seeds, and extra seeds only where some fit.
    script = gpu_study_script()
    assert script.planned_seeds(plan) == {"seeds": [1, 2, 3], "extra_seeds": {"seeds": [4]}}
    assert script.planned_seeds(short) == {"seeds": [1, 2], "extra_seeds": None}
    plain = plan_study(loaded("gpu_study")["parameters"]["study"], 0.05, 7, 10 * per_seed)
    assert script.planned_seeds(plain) == {"seeds": [1, 2, 3]}


def test_a_step_is_timed_on_the_model_it_trains():
    from efm_seg.models import ModelSpec

    seconds = measure_step_seconds(ModelSpec("FPN", "resnet18", 3), 32, 2, steps=2, warmup=1)
    assert 0 < seconds < 30


def gpu_study_script():
    spec = importlib.util.spec_from_file_location(
        "gpu_study", PROJECT_ROOT / "scripts/gpu_study.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_script_runs_the_whole_study_and_writes_it_up(tmp_path, monkeypatch):
    """The one command, at a tiny size on the CPU: data, plan, study, write-up; the encoder's
    weights come from the local file given."""
    import segmentation_models_pytorch as smp

    dubai = requires_shared("dubai_aerial")
    weights = tmp_path / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(smp.encoders.get_encoder("resnet18", weights=None).state_dict(), weights)
    project = make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "write-up"
    record = gpu_study_script().main(
        ["--tiny", "--weights", str(weights), "--raw-root", str(dubai), "--project",
         str(project), "--out", str(out)]
    )  # fmt: skip
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([
        "ablation.png", "convergence.csv", "convergence.png", "paired.csv", "per_fold.csv",
        "per_seed.csv", "run.json", "summary.csv", "tables.md",
    ])  # fmt: skip
    assert json.loads((out / "run.json").read_text()) == record
    plan = record["plan"]
    assert plan["seeds"] == [1] and plan["epochs_per_seed"] == 9  # 1 + 3 + 3 + 1 + 1
    assert plan["seconds_per_step"] > 0 and record["study_seconds"] > 0
    checkpoint = latest_version(
        project, "data/gpu_study/06_models/study/FPN/t1/seed1/baseline_equal/baseline/"
        "best_checkpoint.pt",
    )  # fmt: skip
    config = torch.load(checkpoint, weights_only=True)["config"]
    assert Path(config["encoder_weights"]) == weights and config["epochs"] == 3
