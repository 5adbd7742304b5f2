"""Shared fixtures: tiny raw datasets written on the fly, and a throw-away Kedro project."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
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


@pytest.fixture
def kedro_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of this project's configuration in a temporary folder, made the working directory.

    Runs write only below it; ``conf/local`` shrinks the demo data and the training stages so
    a full default run takes seconds.
    """
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project)
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "src").mkdir()  # the package itself is installed (editable) in .venv
    (project / "conf" / "local").mkdir()
    (project / "conf" / "local" / "catalog.yml").write_text(
        "raw_dataset:\n"
        "  type: efm_seg.datasets.SyntheticSceneFolderDataset\n"
        "  path: data/01_raw/demo\n"
        "  n_scenes: 10\n"
        "  seed: 0\n"
        "  min_size: 64\n"
        "  max_size: 96\n"
    )
    (project / "conf" / "local" / "parameters_preprocessing.yml").write_text(
        "preprocessing:\n  mode: resize\n  size: 64\n  stride: null\n"
        "  image_filter: lanczos\n  workers: 2\n"
    )
    (project / "conf" / "local" / "parameters_stages.yml").write_text(
        "baseline:\n  overrides: {epochs: 2, efm: {enabled: false, start_epoch: 2, every: 1}}\n"
        "efm:\n  overrides: {epochs: 2, efm: {enabled: true, start_epoch: 2, every: 1}}\n"
        "finetune:\n  overrides: {epochs: 1, efm: {enabled: true, start_epoch: 1, every: 1},"
        " init_from: previous}\n"
    )
    monkeypatch.chdir(project)
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    return project


def requires_shared(name: str) -> Path:
    """The path of a real dataset in ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is absent (a plain clone has no ../shared); skipping")
    return path
