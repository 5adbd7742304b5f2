"""Shared fixtures: tiny raw datasets written on the fly, and a throw-away Kedro project."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from omegaconf import OmegaConf
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

# Three classes are enough to exercise every path of the label code.
PALETTE = {"land": (210, 180, 140), "building": (60, 16, 152), "water": (30, 80, 200)}
DATASET_PARAMS = {
    "name": "tiny",
    "mode": "palette",
    "classes": {name: list(colour) for name, colour in PALETTE.items()},
    "ignore_colours": [],
    "ignore_index": 255,
}
LAYOUT_PARAMS = {"images": "images/{id}.jpg", "masks": "masks/{id}.png", "workers": 1}


def scene_labels(height: int, width: int, seed: int) -> np.ndarray:
    """A small label map with structure: land, one building rectangle, a water band."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), dtype=np.uint8)
    y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
    labels[y : y + height // 3, x : x + width // 3] = 1
    labels[:, width - width // 5 :] = 2
    return labels


def write_tiny_store(root: Path, count: int, seed: int, ignore_fraction: float = 0.0):
    """An encoded sample store of ``count`` 64² samples ``s0..``: structured labels, some
    scattered ignore pixels, random images (for tests that need a model's output, not its skill)."""
    from efm_seg.data.samples import EncodedSample, write_store

    rng = np.random.default_rng(seed)
    samples = {}
    for i in range(count):
        labels = scene_labels(64, 64, seed=seed * 100 + i)
        labels[rng.random((64, 64)) < ignore_fraction] = DATASET_PARAMS["ignore_index"]
        image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        samples[f"s{i}"] = EncodedSample.from_arrays(image, labels)
    return write_store(root, samples)


def lineage_of(store, split, run_id: str = "run-a", stage: str = "efm", init=None) -> dict:
    """The ``lineage`` a checkpoint trained in ``run_id`` on ``store`` and ``split`` (with the
    tiny dataset's classes) records."""
    from efm_seg.data.labels import LabelScheme
    from efm_seg.data.split import data_lineage

    data = data_lineage(store, split, LabelScheme.from_params(DATASET_PARAMS))
    return {"run_id": run_id, "stage": stage, **data.as_dict(), "init": init}


def colour_mask(labels: np.ndarray, palette=PALETTE) -> np.ndarray:
    colours = np.array(list(palette.values()), dtype=np.uint8)
    return colours[labels]


def image_for(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = colour_mask(labels).astype(np.int16)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def write_pair(
    root: Path,
    sample_id: str,
    size: tuple[int, int] = (48, 40),
    seed: int = 0,
    image_template: str = "images/{id}.jpg",
    mask_template: str = "masks/{id}.png",
) -> tuple[Path, Path]:
    """Write one image (JPEG) and its colour mask (PNG); ``size`` is (height, width)."""
    labels = scene_labels(*size, seed=seed)
    image_path = root / image_template.format(id=sample_id)
    mask_path = root / mask_template.format(id=sample_id)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_for(labels, seed)).save(image_path, quality=95)
    Image.fromarray(colour_mask(labels)).save(mask_path)
    return image_path, mask_path


@pytest.fixture
def raw_root(tmp_path: Path) -> Path:
    """Six valid pairs of differing sizes under ``tmp_path/raw``."""
    root = tmp_path / "raw"
    for i in range(6):
        write_pair(root, f"s{i}", size=(40 + 4 * i, 48 - 2 * i), seed=i)
    return root


TINY_STAGES = """
baseline:
  overrides: {epochs: 2, batch_size: 4, efm: {enabled: false, start_epoch: 2, every: 1}}
efm:
  overrides: {epochs: 2, batch_size: 4,
              efm: {enabled: true, source: per_sample, start_epoch: 2, every: 1}}
finetune:
  overrides: {epochs: 1, batch_size: 4, efm: {enabled: true, source: online, start_epoch: 1,
              every: 1}, init_from: previous}
"""
"""Tiny training stages: two per-sample EFM epochs, one online fine-tuning epoch."""


TEST_ENCODER = "mobilenet_v2"
"""The encoder of the throw-away projects (conf/base's demo uses resnet18)."""


def make_project(parent: Path) -> Path:
    """A copy of this project's configuration in ``parent/project``.

    Runs write only below it; ``conf/local`` shrinks the demo data and the training stages so
    a full default run takes seconds.
    """
    project = parent / "project"
    project.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project)
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "src").mkdir()  # the package itself is installed (editable) in .venv
    write_tiny_local(project / "conf")
    return project


def write_tiny_local(conf: Path) -> None:
    """``conf/local`` files (in the configuration folder ``conf``) that shrink the demo data and
    the training stages so that a full default run takes seconds."""
    (conf / "local").mkdir(exist_ok=True)
    (conf / "local" / "catalog.yml").write_text(
        "raw_dataset:\n"
        "  type: efm_seg.framework.datasets.SyntheticSceneFolderDataset\n"
        "  path: ${globals:data_root}/01_raw/demo\n"
        "  n_scenes: 10\n"
        "  seed: 0\n"
        "  min_size: 64\n"
        "  max_size: 96\n"
    )
    (conf / "local" / "parameters_preprocessing.yml").write_text(
        "preprocessing:\n  mode: resize\n  size: 64\n  stride: null\n"
        "  image_filter: lanczos\n  workers: 2\n"
    )
    (conf / "local" / "parameters_stages.yml").write_text(TINY_STAGES)
    # No MLflow store in every throw-away run; tests/framework/test_tracking.py switches it on.
    (conf / "local" / "parameters_tracking.yml").write_text(
        "tracking:\n  enabled: false\n  checkpoints: true\n"
    )
    # A lighter encoder than the demo's resnet18: a third of the weights, so the suite's many
    # checkpoints stay small on disk and train faster; everything else is conf/base's recipe.
    training = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())
    training["training"]["model"]["encoder"] = TEST_ENCODER
    (conf / "local" / "parameters_training.yml").write_text(yaml.safe_dump(training))


def kedro_run(
    project: Path,
    pipelines: list[str] | None = None,
    env: str | None = None,
    load_versions: dict[str, str] | None = None,
    **params,
) -> dict:
    """``kedro run [--pipelines ...] [--env ...] [--load-versions ...] [--params ...]`` through a
    KedroSession.

    ``params`` are given as on the command line (``**{"split.seed": 7}``) and nested as the
    CLI nests them (``{"split": {"seed": 7}}``); a flat dotted key would never reach a node.
    """
    runtime = OmegaConf.to_container(
        OmegaConf.from_dotlist([f"{k}={v}" for k, v in params.items()])
    )
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env, runtime_params=runtime or None) as s:
        return s.run(pipeline_names=pipelines, load_versions=load_versions)


@pytest.fixture
def kedro_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away copy of the project (see :func:`make_project`), made the working directory."""
    project = make_project(tmp_path)
    monkeypatch.chdir(project)
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    return project


DEMO_EFM_METHOD = {
    "map": {"alpha": 0.45, "sigma": 1.5},
    "loss": {
        "lambda_ce": 0.9,
        "lambda_dice": 1.1,
        "label_smoothing": 0.02,
        "alpha_f": 1.6,
        "beta_f": 1.2,
        "gamma": 0.9,
        "kernel_size": 5,
        "topk_ratio": 0.5,
        "form": "eq7",
    },
}
"""Non-default EFM settings of the shared demo run: they must reach the trained stages."""


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project after ONE default ``kedro run`` (every pipeline, data to report) on the tiny
    demo, with :data:`DEMO_EFM_METHOD`. Shared by the tests that only read its outputs."""
    project = make_project(tmp_path_factory.mktemp("demo_run"))
    (project / "conf" / "local" / "parameters_efm.yml").write_text(
        yaml.safe_dump({"efm_method": DEMO_EFM_METHOD})
    )
    # Tracked in MLflow (the SQLite store in the project), read by tests/framework/test_tracking.py.
    (project / "conf" / "local" / "parameters_tracking.yml").write_text(
        yaml.safe_dump({"tracking": {"enabled": True, "checkpoints": True}})
    )
    # Figures at a low resolution: rendering them is most of the run's time.
    (project / "conf" / "local" / "parameters_reporting.yml").write_text(
        yaml.safe_dump({"reporting": {"title": "tiny run", "dpi": 50}})
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(project)
        monkeypatch.setenv("DO_NOT_TRACK", "1")
        kedro_run(project)
    return project


@pytest.fixture
def demo_copy(demo_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of :func:`demo_run` (configuration and data), made the working directory,
    for tests that run more pipelines on it."""
    copy = tmp_path / "project"
    shutil.copytree(demo_run, copy)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    return copy


def saved_versions(project: Path, relpath: str) -> list[str]:
    """The saved versions of the versioned dataset at ``data/local/<relpath>``, oldest first."""
    return sorted(p.name for p in (project / "data/local" / relpath).iterdir())


def latest_version(project: Path, relpath: str) -> Path:
    """The newest saved version of the versioned dataset at ``relpath`` (below ``project``)."""
    folder = project / relpath
    return sorted(folder.iterdir())[-1] / folder.name


def requires_shared(name: str) -> Path:
    """The path of a real dataset in ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is absent (a plain clone has no ../shared); skipping")
    return path
