"""The predict pipeline's datasets: scenes read lazily; predictions written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kedro.io import DatasetError, Version
from PIL import Image

from efm_seg.data.scenes import Legend, Predictions, SceneFile, write_label_map
from efm_seg.framework.datasets import PredictionFolderDataset, SceneFolderDataset
from efm_seg.inference.streaming import LabelledBlock

CLASSES = ("land", "water")
COLOURS = ((200, 180, 140), (30, 80, 200))
LEGEND = Legend(CLASSES, (0, 1), COLOURS, 255)


def prediction(folder: Path, name: str, height: int = 8, width: int = 6):
    """A scene on disk and its writer, which writes a fixed label map for it."""
    path = folder / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 100, np.uint8)).save(path)
    labels = np.zeros((height, width), np.int16)
    labels[:, : width // 2] = 1

    def write(into: Path) -> dict:
        with SceneFile(path).open(None) as reader:
            valid = np.ones_like(labels, dtype=bool)
            blocks = [LabelledBlock(0, 0, labels, valid)]
            _, counts = write_label_map(into, reader, blocks, LEGEND, 0, 0.5)
            return counts.row(path.name, reader.info, LEGEND)

    return write


def test_a_failed_prediction_leaves_no_version_behind(tmp_path):
    dataset = PredictionFolderDataset(str(tmp_path / "predictions"), version=Version(None, "v1"))

    def broken(folder):
        raise RuntimeError("out of memory in the second scene")

    scenes = tmp_path / "scenes"
    with pytest.raises(Exception, match="out of memory"):
        dataset.save(Predictions(LEGEND, {"a": prediction(scenes, "a"), "b": broken}))
    assert not (tmp_path / "predictions").exists() or not any((tmp_path / "predictions").iterdir())
    dataset.save(
        Predictions(LEGEND, {"a": prediction(scenes, "a"), "b": prediction(scenes, "b", 5, 4)})
    )
    latest = PredictionFolderDataset(str(tmp_path / "predictions"), version=Version(None, None))
    files = [p.name for p in latest.load()]
    scene_files = [f"{s}{end}" for s in "ab" for end in (".png", "_ids.png", "_overlay.jpg")]
    assert files == sorted([*scene_files, "areas.csv", "legend.csv"])
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
    info = scenes["a"].probe()
    assert sorted(scenes) == ["a", "deep", "palette"] and (info.height, info.width) == (9, 7)
    assert info.count == 3
    with scenes["a"].open(None) as reader:
        assert reader.read(0, 9, 0, 7)[0].shape == (9, 7, 3)
        assert reader.read(2, 5, 1, 4)[0].shape == (3, 3, 3)  # a block
    # A palette image is its colours, three bands.
    assert scenes["palette"].probe().count == 3
    with scenes["palette"].open(None) as reader:
        assert reader.read(0, 1, 0, 1)[0][0, 0].tolist() == [10, 20, 30]
    for read in (scenes["deep"].probe, lambda: scenes["deep"].open(None).__enter__()):
        with pytest.raises(ValueError, match=r"deep.png: is not 8 bits per band \(mode I;16\)"):
            read()
