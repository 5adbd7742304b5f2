"""``--params a.b.c=v`` changes exactly ``a.b.c``, in every shipped environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from kedro.framework.cli.cli import KedroCLI
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from omegaconf import OmegaConf

# Keys every environment defines, keys only base defines, nested three levels deep, and a
# block (dataset) that the dataset environments replace whole.
DOTTED = {
    "split.seed": 7,
    "efm.overrides.efm.source": "online",
    "finetune.overrides.epochs": 2,
    "training.optimizer.lr": 0.001,
    "dataset.ignore_index": 254,
    "evaluation.boundary.pixels": 3,
}


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def parameters(project: Path, env: str | None, dotted: dict) -> dict:
    runtime = OmegaConf.to_container(
        OmegaConf.from_dotlist([f"{k}={v}" for k, v in dotted.items()])
    )
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env, runtime_params=runtime or None) as s:
        return s.load_context().config_loader["parameters"]


@pytest.mark.parametrize("env", [None, "dubai", "loveda", "paper"])
def test_runtime_params_change_exactly_the_keys_they_name(kedro_project, env):
    before = flatten(parameters(kedro_project, env, {}))
    after = flatten(parameters(kedro_project, env, DOTTED))
    for key, value in DOTTED.items():
        assert after[key] == value, key
    assert {k: v for k, v in after.items() if k not in DOTTED} == {
        k: v for k, v in before.items() if k not in DOTTED
    }


def test_an_environment_still_replaces_the_blocks_it_defines(kedro_project):
    base = parameters(kedro_project, None, {"dataset.ignore_index": 254})
    dubai = parameters(kedro_project, "dubai", {"dataset.ignore_index": 254})
    assert dubai["dataset"]["name"] == "dubai_aerial" and base["dataset"]["name"] == "demo"
    dubai_classes = yaml.safe_load((kedro_project / "conf/dubai/parameters.yml").read_text())
    assert dubai["dataset"]["classes"] == dubai_classes["dataset"]["classes"]  # not merged
    assert dubai["dataset"]["ignore_index"] == 254


def test_raw_root_without_an_environment_that_reads_it_is_refused(kedro_project):
    runner = CliRunner()
    cli = KedroCLI(project_path=kedro_project)
    result = runner.invoke(
        cli, ["run", "--pipelines", "ingestion", "--params", "raw_root=/data/elsewhere"]
    )
    assert result.exit_code != 0
    assert "raw_root=/data/elsewhere" in str(result.exception)
    assert "--env dubai" in str(result.exception)
    assert not (
        kedro_project / "data/local/01_raw/demo"
    ).exists()  # nothing generated, nothing read
    assert not (kedro_project / "data/local/02_intermediate/manifest.csv").exists()


@pytest.mark.realdata
def test_raw_root_is_read_by_the_dataset_environments(kedro_project):
    from tests.conftest import requires_shared

    root = requires_shared("dubai_aerial")
    bootstrap_project(kedro_project)
    with KedroSession.create(
        project_path=kedro_project, env="dubai", runtime_params={"raw_root": str(root)}
    ) as session:
        catalog = session.load_context().catalog
    assert catalog.load("raw_dataset").root == root.resolve()
