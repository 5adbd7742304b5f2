"""The predict pipeline's datasets: scenes read lazily; predictions written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kedro.io import DatasetError, Version
from PIL import Image

from efm_seg.data.scenes import Prediction, Scene
from efm_seg.framework.datasets import PredictionFolderDataset, SceneFolderDataset

CLASSES = ("land", "water")
COLOURS = ((200, 180, 140), (30, 80, 200))


def prediction(name: str, height: int = 8, width: int = 6) -> Prediction:
    image = np.full((height, width, 3), 100, np.uint8)
    labels = np.zeros((height, width), np.uint8)
    labels[:, : width // 2] = 1
    return Prediction(Scene(name, Path(f"{name}.png"), image), labels, CLASSES, COLOURS)


def test_a_failed_prediction_leaves_no_version_behind(tmp_path):
    dataset = PredictionFolderDataset(str(tmp_path / "predictions"), version=Version(None, "v1"))

    def broken():
        raise RuntimeError("out of memory in the second scene")

    with pytest.raises(Exception, match="out of memory"):
        dataset.save({"a": lambda: prediction("a"), "b": broken})
    assert not (tmp_path / "predictions").exists() or not any((tmp_path / "predictions").iterdir())
    dataset.save({"a": lambda: prediction("a"), "b": prediction("b", 5, 4)})
    latest = PredictionFolderDataset(str(tmp_path / "predictions"), version=Version(None, None))
    files = [p.name for p in latest.load()]
    assert files == sorted(
        ["a.png", "a_ids.png", "a_overlay.jpg", "b.png", "b_ids.png", "b_overlay.jpg", "areas.csv"]
    )
    label_map = Image.open(tmp_path / "predictions/v1/predictions/a.png")
    assert label_map.getpalette()[:6] == [*COLOURS[0], *COLOURS[1]]


def test_scene_folder_is_lazy_and_names_problems(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        SceneFolderDataset(str(folder)).load()
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(folder / "a.jpg")
    with pytest.raises(DatasetError, match="share the name 'a'"):
        SceneFolderDataset(str(folder)).load()
    (folder / "a.jpg").unlink()
    Image.fromarray(np.zeros((9, 7), np.uint16)).save(folder / "deep.png")
    palette = Image.fromarray(np.ones((9, 7), np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.save(folder / "palette.png")
    scenes = SceneFolderDataset(str(folder)).load()
    assert sorted(scenes) == ["a", "deep", "palette"] and scenes["a"].probe() == (9, 7, 3)
    assert scenes["a"].load().image.shape == (9, 7, 3)
    # A palette image is its colours, three bands.
    assert scenes["palette"].probe() == (9, 7, 3)
    assert scenes["palette"].load().image[0, 0].tolist() == [10, 20, 30]
    for read in (scenes["deep"].probe, scenes["deep"].load):
        with pytest.raises(ValueError, match=r"deep.png: is not 8 bits per band \(mode I;16\)"):
            read()
