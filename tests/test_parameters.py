"""Parameter blocks are validated when a run starts, before any node writes anything."""

from __future__ import annotations

import re

import pytest
import torch
from pydantic import ValidationError

from efm_seg.basics.mappings import deep_merge
from efm_seg.parameters import (
    EFMMethodParams,
    EvaluationParams,
    ReportingParams,
    SplitParams,
    StageOverrides,
    TrainingParams,
    describe,
    equal_budget_overrides,
)
from tests.conftest import kedro_run

# One value per block family through a whole `kedro run`; the schemas' other rules below.
BAD_VALUES = [
    ("training.optimizer.lr=0", r"training.*optimizer\.lr.*greater than 0"),
    ("efm.overrides.optimizer.lr=0", r"efm\.overrides.*optimizer\.lr.*greater than 0"),
    ("efm_method.loss.kernel_size=4", r"efm_method.*kernel_size.*must be odd"),
    ("split.fractions.test=0.3", r"split.*sum to 1\.2"),
    ("preprocessing.size=4", r"preprocessing\.size: 4 must be an integer >= 8"),
    ("dataset.ignore_index=-3", r"dataset"),
    (
        "baseline_equal.overrides.epochs=7",
        r"baseline_equal\.overrides\.epochs is set \(7\).*as many epochs as the three stages",
    ),
]

SCHEMA_RULES = [
    (TrainingParams, {"efm": {"source": "test_set"}}, r"efm\.source.*per_sample"),
    (TrainingParams, {"model": {"arch": "FPNN"}}, r"'FPNN' is not an smp architecture"),
    (TrainingParams, {"augment": {"hflip": 2}}, r"augment\.hflip"),
    (TrainingParams, {"optimiser": {"lr": 0.1}}, r"optimiser.*unknown key"),
    (TrainingParams, {"ema": {"decay": 1.5}}, r"ema\.decay"),
    (TrainingParams, {"precision": "fp8"}, r"precision"),
    (TrainingParams, {"init_from": "baseline"}, r"init_from"),
    (TrainingParams, {"device": "gpu9"}, r"device.*'gpu9' is not a device"),
    (StageOverrides, {"epochs": 0}, r"epochs.*greater than or equal to 1"),
    (TrainingParams, {"precision": "fp16", "device": "cpu"}, r"fp16 needs a CUDA device"),
    (EFMMethodParams, {"loss": {"topk_ratio": 1.5}}, r"loss\.topk_ratio.*less than or equal to 1"),
    (EFMMethodParams, {"map": {"alpha": -0.1}}, r"map\.alpha"),
    (EvaluationParams, {"calibration_bins": 0}, r"calibration_bins"),
    (EvaluationParams, {"boundary": {"pixels": 0}}, r"boundary\.pixels"),
    (SplitParams, {"group_by": "tile"}, r"group_by.*'group' or 'source'"),
    (ReportingParams, {"dpi": 5}, r"dpi"),
]
VALID = {"epochs": 2, "batch_size": 4, "optimizer": {"lr": 0.1}}
SPLIT = {"fractions": {"train": 0.8, "val": 0.1, "test": 0.1}}


@pytest.mark.parametrize(("schema", "value", "message"), SCHEMA_RULES)
def test_schema_rules_name_the_key_and_the_value(schema, value, message):
    base = {TrainingParams: VALID, SplitParams: SPLIT}.get(schema, {})
    with pytest.raises(ValidationError) as error:
        schema.model_validate(deep_merge(base, value))
    assert re.search(message, describe(error.value, "block"), re.DOTALL), describe(
        error.value, "block"
    )


@pytest.mark.parametrize(("param", "message"), BAD_VALUES)
def test_a_bad_value_stops_the_whole_run_before_anything_is_written(kedro_project, param, message):
    key, value = param.split("=")
    with pytest.raises(Exception, match=f"(?s){message}"):
        kedro_run(kedro_project, **{key: value})  # the default run: data to report
    assert not (kedro_project / "data/local/01_raw").exists()  # not even the demo generated
    assert not (kedro_project / "data/local/02_intermediate").exists()


def test_validation_is_scoped_to_the_pipelines_that_run(kedro_project):
    kedro_run(kedro_project, ["ingestion"], **{"training.optimizer.lr": 0})  # not used here
    assert (kedro_project / "data/local/02_intermediate/manifest.csv").is_dir()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without GPU")
def test_a_cuda_device_without_a_gpu_is_refused_up_front(kedro_project):
    with pytest.raises(
        Exception, match=r"(?s)device.*'cuda' asks for a CUDA GPU but torch sees none"
    ):
        kedro_run(kedro_project, ["baseline"], **{"training.device": "cuda"})
    with pytest.raises(Exception, match=r"(?s)evaluation.*'cuda:0' asks for a CUDA GPU"):
        kedro_run(kedro_project, ["evaluation"], **{"evaluation.device": "cuda:0"})


def test_overrides_are_checked_on_their_own_and_merged_whole():
    StageOverrides.model_validate({"epochs": 3, "ema": {"decay": 0.5}})
    with pytest.raises(ValueError, match="decay"):
        StageOverrides.model_validate({"ema": {"decay": 1.5}})
    recipe = TrainingParams.model_validate(
        {
            "epochs": 2,
            "batch_size": 4,
            "optimizer": {"lr": 0.1},
            "model": {"encoder_weights": "none"},
        }
    )
    assert recipe.model.encoder_weights is None and recipe.ema.decay == 0.999
    with pytest.raises(ValueError, match="batch_size"):
        TrainingParams.model_validate({"epochs": 2, "batch_size": "4", "optimizer": {"lr": 0.1}})


def test_a_size_the_architecture_cannot_take_stops_the_run_before_preprocessing(kedro_project):
    with pytest.raises(ValueError, match=r"baseline stage: .*preprocessing\.size"):
        kedro_run(kedro_project, **{"preprocessing.size": 48})  # FPN needs multiples of 32
    assert not (kedro_project / "data/local/01_raw").exists()
    assert not (kedro_project / "data/local/.run.lock").exists()  # a refused run takes no lock


def test_a_stage_that_cannot_take_the_stores_samples_is_refused_before_training(kedro_project):
    data = ["ingestion", "preprocessing", "split"]
    kedro_run(kedro_project, data, **{"preprocessing.size": 48})  # fine without training
    with pytest.raises(ValueError, match=r"efm stage: .*the store's"):
        kedro_run(kedro_project, ["efm"])
    assert not (kedro_project / "data/local/06_models").exists()


@pytest.mark.parametrize(
    ("pipeline", "param", "message"),
    [
        ("baseline", "baseline.overrides.optimizer.lr=0", r"baseline\.overrides.*optimizer\.lr"),
        ("training", "efm_method.map.alpha=2", r"efm_method.*map\.alpha"),
        ("evaluation", "evaluation.batch_size=0", r"evaluation.*batch_size"),
        ("ingestion", "ingestion.images=images/x.jpg", r"ingestion.*\{id\}"),
    ],
)
def test_each_pipeline_alone_validates_the_blocks_it_reads(kedro_project, pipeline, param, message):
    key, value = param.split("=")
    with pytest.raises(Exception, match=f"(?s)Parameter validation failed.*{message}"):
        kedro_run(kedro_project, [pipeline], **{key: value})


def test_the_equal_budget_baseline_trains_the_stages_epochs_with_the_baselines_recipe():
    training = {**VALID, "epochs": 4}
    stages = {
        "baseline": {"epochs": 3, "ema": {"decay": 0.5}},
        "efm": {"efm": {"enabled": True}},  # training.epochs: 4
        "finetune": {"epochs": 2, "init_from": "previous"},
    }
    assert equal_budget_overrides(training, stages, {}) == {"epochs": 9, "ema": {"decay": 0.5}}
    own = equal_budget_overrides(training, stages, {"criterion": {"name": "focal"}})
    assert own == {"epochs": 9, "ema": {"decay": 0.5}, "criterion": {"name": "focal"}}
    with pytest.raises(ValueError, match=r"baseline_equal\.overrides\.epochs is set \(12\)"):
        equal_budget_overrides(training, stages, {"epochs": 12})
