"""Stage configuration: merging, validation, the EFM schedule, device and precision."""

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from efm_seg.basics.mappings import deep_merge
from efm_seg.training.config import ConfigError, EFMSchedule, TrainConfig
from efm_seg.training.precision import resolve_device, resolve_precision

CONF = Path(__file__).resolve().parents[2] / "conf" / "base"


def conf(name):
    return yaml.safe_load((CONF / f"parameters_{name}.yml").read_text())


def stage_config(stage="efm", **changes):
    overrides = deep_merge(conf(stage)[stage]["overrides"], changes)
    return TrainConfig.from_params(
        stage, conf("training")["training"], overrides, conf("efm")["efm_method"]
    )


def test_deep_merge_overrides_nested_keys_only():
    merged = deep_merge({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"d": 4}, "e": 5})
    assert merged == {"a": 1, "b": {"c": 2, "d": 4}, "e": 5}


def test_the_three_base_stages_differ_only_in_their_overrides():
    baseline, efm, finetune = (stage_config(s) for s in ("baseline", "efm", "finetune"))
    assert not baseline.efm.enabled and efm.efm.enabled and finetune.efm.enabled
    assert finetune.init_from == "previous" and efm.init_from is None
    assert baseline.lr == efm.lr == 5e-4  # the paper's AdamW settings
    assert finetune.lr == 1e-4  # the demo fine-tunes gently (conf/paper keeps 5e-4)
    assert baseline.weight_decay == 1e-4 and baseline.grad_clip == 1.0
    assert efm.loss["label_smoothing"] == 0.05 and efm.efm_map["alpha"] == 0.6


def test_efm_schedule_starts_at_start_epoch_and_repeats_every_k():
    schedule = EFMSchedule(enabled=True, start_epoch=5, every=2)
    assert [e for e in range(1, 13) if schedule.is_refresh_epoch(e)] == [5, 7, 9, 11]
    assert [e for e in range(1, 8) if schedule.active(e)] == [5, 6, 7]
    assert not any(EFMSchedule(enabled=False).active(e) for e in range(1, 20))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "efm.training.epochs"),
        ({"batch_size": "8"}, "efm.training.batch_size"),
        ({"optimizer": {"lr": -1}}, "efm.training.optimizer.lr"),
        ({"optimizer": {"momentum": 0.9}}, "unknown key"),
        ({"scheduler": "step"}, "efm.training.scheduler"),
        ({"precision": "fp8"}, "efm.training.precision"),
        ({"ema": {"decay": 1.5}}, "efm.training.ema.decay"),
        ({"efm": {"source": "test_set"}}, "efm.training.efm.source"),
        ({"efm": {"every": 0}}, "efm.training.efm.every"),
        ({"init_from": "baseline"}, "efm.training.init_from"),
        ({"device": "gpu9"}, "efm.training.device"),
        ({"learning_rate": 1}, "unknown key"),
    ],
)
def test_invalid_parameters_name_the_parameter(changes, message):
    with pytest.raises(ConfigError, match=message):
        stage_config(**changes)


def test_device_and_precision_resolution_on_cpu():
    config = stage_config(device="cpu", precision="auto")
    assert resolve_device(config.device) == torch.device("cpu")
    assert resolve_precision(config, torch.device("cpu")) == (None, False)
    assert resolve_precision(stage_config(precision="bf16"), torch.device("cpu")) == (
        torch.bfloat16,
        False,
    )
    # As on a machine with a GPU (validation on this one would refuse fp16 before).
    fp16 = dataclasses.replace(
        config, recipe=config.recipe.model_copy(update={"precision": "fp16"})
    )
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision(fp16, torch.device("cpu"))
    assert resolve_precision(fp16, torch.device("cuda")) == (torch.float16, True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without GPU")
def test_fp16_without_a_gpu_is_refused_when_the_configuration_is_read():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        stage_config(precision="fp16")
