"""One session, one configuration: whatever other sessions or config loaders a process holds,
every path a session's catalog reads or writes lies under its own environment's data root, and
the study pipeline is the grid of its own ``study`` block. The CLI starts without torch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.framework import project as kedro_project_module
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from efm_seg.data.samples import open_store
from efm_seg.framework.hooks.checks import MissingInputError
from tests.conftest import PROJECT_ROOT, kedro_run, make_project

# Read from outside the data root by design: the raw dataset (--params raw_root) and the scenes
# to label (--params predict_root).
INPUTS_FROM_ELSEWHERE = {"raw_dataset", "predict_scenes"}
SHIPPED = ["local", "dubai", "loveda", "paper"]
TINY_GRID = {
    "architectures": ["FPN"],
    "seeds": [1],
    "epochs": {"baseline": 1, "efm": 1, "finetune": 1},
    "overrides": {"efm": {"efm": {"start_epoch": 1, "every": 1}}},
    "variants": {"full": {}},
}


def add_user_environment(project: Path) -> str:
    """``conf/mine``: a user's environment with its own (smaller) demo data and study grid."""
    conf = project / "conf" / "mine"
    conf.mkdir()
    local = project / "conf" / "local"
    for name in ("parameters_stages.yml", "parameters_training.yml", "parameters_tracking.yml"):
        (conf / name).write_text((local / name).read_text())
    catalog = yaml.safe_load((local / "catalog.yml").read_text())
    catalog["raw_dataset"]["n_scenes"] = 8
    catalog["raw_dataset"]["seed"] = 5
    (conf / "catalog.yml").write_text(yaml.safe_dump(catalog))
    (conf / "parameters_preprocessing.yml").write_text(
        (local / "parameters_preprocessing.yml").read_text()
    )
    (conf / "parameters_study.yml").write_text(yaml.safe_dump({"study": TINY_GRID}))
    return "mine"


def dataset_paths(catalog, names) -> dict[str, Path]:
    """The path each named dataset reads or writes (those that have one)."""
    paths = {}
    for name in sorted(names):
        if name.startswith("params:") or name == "parameters" or name in INPUTS_FROM_ELSEWHERE:
            continue
        described = catalog.get(name, fallback_to_runtime_pattern=True)._describe()
        where = described.get("filepath") or described.get("path")
        if where:
            paths[name] = Path(str(where))
    return paths


def assert_under(paths: dict[str, Path], root: Path) -> None:
    outside = {name: str(path) for name, path in paths.items() if root not in path.parents}
    assert not outside, f"outside {root}: {outside}"


@pytest.fixture(scope="module")
def project_with_mine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throw-away project with a user's environment beside the shipped ones; nothing in it is
    run, so the tests that only read configuration share it."""
    project = make_project(tmp_path_factory.mktemp("sessions"))
    add_user_environment(project)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(project)
        monkeypatch.setenv("DO_NOT_TRACK", "1")
        yield project


@pytest.mark.parametrize("registry_first", [True, False], ids=["registry-first", "context-first"])
@pytest.mark.parametrize("env", [*SHIPPED, "mine"])
def test_every_catalog_path_lies_under_the_sessions_data_root(
    project_with_mine, env, registry_first
):
    kedro_project = project_with_mine
    bootstrap_project(kedro_project)
    pipelines = kedro_project_module.pipelines
    if registry_first:  # a registry built before any session (a script, a notebook)
        sorted(pipelines)
    session = KedroSession.create(project_path=kedro_project, env=None if env == "local" else env)
    context = session.load_context()
    # The study pipeline is this session's grid (Kedro's registry is one per process: it follows
    # the session whose context was made, or which runs, last).
    study = context.config_loader["parameters"]["study"]
    cells = {n.namespace for n in pipelines["study"].nodes if n.name.endswith(".train")}
    runs = 2 + 2 * len(study["variants"])  # two baselines, then each variant's two stages
    assert len(cells) == len(study["architectures"]) * len(study["seeds"]) * runs
    names = set()
    for name in ("__default__", "study", "predict"):
        names |= pipelines[name].datasets()
    # Another session's loader, made after this one's and before its catalog is read.
    other = "loveda" if env != "loveda" else "dubai"
    KedroSession.create(project_path=kedro_project, env=other).load_context().catalog  # noqa: B018
    catalog = context.catalog
    paths = dataset_paths(catalog, names | set(catalog.keys()))
    assert "encoded_samples" in paths and any(n.startswith("study.") for n in paths)
    assert_under(paths, (kedro_project / "data" / env).resolve())


@pytest.mark.parametrize("env", ["dubai", "mine"])
def test_the_cli_resolves_every_path_under_the_environments_data_root(project_with_mine, env):
    kedro_project = project_with_mine
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "catalog", "resolve-patterns", "--env", env, "-p", "study"],
        cwd=kedro_project,
        capture_output=True,
        text=True,
        check=True,
    )
    # Kedro writes Python objects (tuples, MemoryDataset's placeholder) into its YAML.
    resolved = yaml.load(result.stdout, Loader=yaml.UnsafeLoader)
    paths = {
        name: Path(entry.get("filepath") or entry.get("path"))
        for name, entry in resolved.items()
        if name not in INPUTS_FROM_ELSEWHERE and (entry.get("filepath") or entry.get("path"))
    }
    assert any(name.startswith("study.") for name in paths)
    assert_under(paths, (kedro_project / "data" / env).resolve())


def test_the_study_in_another_environment_refuses_to_start_without_its_own_store(demo_copy):
    """After a demo run, ``kedro run --env dubai --pipelines study`` must not train on the demo's
    store: it refuses at once, naming Dubai's data root."""
    before = sorted(p.relative_to(demo_copy) for p in (demo_copy / "data/local").rglob("*"))
    with pytest.raises(MissingInputError, match=r"data/dubai/05_model_input/encoded") as error:
        kedro_run(demo_copy, ["study"], env="dubai", **{"tracking.enabled": "false"})
    assert "environment dubai" in str(error.value) and "Nothing was run" in str(error.value)
    assert not list((demo_copy / "data/dubai").rglob("*.pt"))
    assert sorted(p.relative_to(demo_copy) for p in (demo_copy / "data/local").rglob("*")) == before


def test_a_bad_study_block_is_refused_in_one_line_before_anything_runs(kedro_project):
    """``kedro run --env dubai --pipelines study --params study.confidence=2.0``: the run stops
    with the parameter's own one-line message, having written nothing."""
    with pytest.raises(
        ValueError, match=r"^study\.confidence: Input should be less than 1 \(got 2\.0\)$"
    ):
        kedro_run(kedro_project, ["study"], env="dubai", **{"study.confidence": "2.0"})
    assert not (kedro_project / "data" / "dubai").exists()


def test_the_study_in_a_users_environment_trains_on_that_environments_store(demo_copy):
    env = add_user_environment(demo_copy)
    kedro_run(demo_copy, ["ingestion", "preprocessing", "split", "study"], env=env)
    mine = open_store(demo_copy / "data/mine/05_model_input/encoded")
    demo = open_store(demo_copy / "data/local/05_model_input/encoded")
    assert mine.fingerprint != demo.fingerprint
    scores = [
        path
        for path in (demo_copy / "data/mine/07_model_output/study").rglob("scores.csv")
        if path.is_file()  # the file inside each versioned folder
    ]
    assert len(scores) == 4  # both baselines, the variant's EFM stage and its fine-tuning
    assert {str(pd.read_csv(path)["store"].iloc[0]) for path in scores} == {mine.fingerprint}


def test_settings_and_the_registry_import_no_torch():
    """Every ``kedro`` command imports the settings (hooks, config loader) and builds the registry
    (every pipeline and its nodes): none of it may import torch, smp, mlflow or rasterio."""
    code = (
        "import sys\n"
        "import efm_seg.settings\n"
        "from kedro.framework.project import configure_project, pipelines\n"
        "configure_project('efm_seg')\n"
        "assert len(pipelines['__default__'].nodes) > 10\n"
        "heavy = ['torch', 'segmentation_models_pytorch', 'mlflow', 'rasterio', 'albumentations']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_run_that_trains_nothing_loads_no_torch(kedro_project):
    """``kedro run --pipelines ingestion,preprocessing,split`` through the real CLI, in one
    process, which then still has no torch."""
    code = (
        "import sys\n"
        "from kedro.framework.cli import main\n"
        "sys.argv = ['kedro', 'run', '--pipelines', 'ingestion,preprocessing,split']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=kedro_project, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (kedro_project / "data/local/05_model_input").is_dir()
    assert result.stdout.strip().splitlines()[-1] == "False"
