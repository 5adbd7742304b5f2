"""Kedro's file datasets, saved atomically: a failed or killed save never leaves a file that a
later load would read, and the catalog uses them for every file it writes."""

from __future__ import annotations

import errno
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml
from fsspec.implementations.local import LocalFileOpener
from kedro.io import DatasetError, Version

from efm_seg.framework.datasets import (
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicMatplotlibDataset,
    AtomicTextDataset,
)
from tests.conftest import PROJECT_ROOT

CATALOG = PROJECT_ROOT / "conf" / "base" / "catalog.yml"


def figure(title: str):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.set_title(title)
    return fig


# name, dataset class, extra arguments, data factory, check of what load returns
CASES = {
    "csv": (
        AtomicCSVDataset,
        {"save_args": {"index": False}},
        lambda i: pd.DataFrame({"value": range(i, i + 500)}),
        lambda loaded, i: loaded["value"].iloc[0] == i and len(loaded) == 500,
    ),
    "json": (
        AtomicJSONDataset,
        {},
        lambda i: {"value": i, "rows": list(range(500))},
        lambda loaded, i: loaded["value"] == i,
    ),
    "text": (
        AtomicTextDataset,
        {},
        lambda i: f"value {i}\n" + "x" * 5000,
        lambda loaded, i: loaded.startswith(f"value {i}\n"),
    ),
}


def versioned(cls, folder: Path, name: str, version: str | None, **kwargs):
    return cls(filepath=str(folder / name), version=Version(version, version), **kwargs)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def failing_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every local file write put a few bytes on disk, then fail as a full disk does."""

    def write(self, data):
        self.f.write(data[:7])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalFileOpener, "write", write, raising=False)


@pytest.mark.parametrize("kind", CASES)
def test_a_versioned_save_round_trips_and_leaves_no_staging_file(tmp_path, kind):
    cls, kwargs, make, check = CASES[kind]
    versioned(cls, tmp_path, "out", "v1", **kwargs).save(make(1))
    versioned(cls, tmp_path, "out", "v2", **kwargs).save(make(2))
    assert files_under(tmp_path) == ["out", "out/v1", "out/v1/out", "out/v2", "out/v2/out"]
    assert check(versioned(cls, tmp_path, "out", None, **kwargs).load(), 2)
    assert check(versioned(cls, tmp_path, "out", "v1", **kwargs).load(), 1)


@pytest.mark.parametrize("kind", CASES)
def test_a_full_disk_mid_save_leaves_nothing_and_names_the_file(tmp_path, kind, monkeypatch):
    cls, kwargs, make, check = CASES[kind]
    versioned(cls, tmp_path, "out", "v1", **kwargs).save(make(1))
    failing_write(monkeypatch)
    with pytest.raises(DatasetError, match=r"cannot write .*out/v2/out: the disk is full.*ENOSPC"):
        versioned(cls, tmp_path, "out", "v2", **kwargs).save(make(2))
    monkeypatch.undo()
    # Neither the partial file nor the version folder it was going into is left behind, so the
    # latest version is still the complete earlier one.
    assert files_under(tmp_path) == ["out", "out/v1", "out/v1/out"]
    assert check(versioned(cls, tmp_path, "out", None, **kwargs).load(), 1)


def test_an_unversioned_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    dataset = AtomicTextDataset(filepath=str(tmp_path / "report.md"))
    dataset.save("complete report")
    monkeypatch.setattr(
        LocalFileOpener,
        "write",
        lambda self, data: (self.f.write(data[:3]), (_ for _ in ()).throw(KeyboardInterrupt())),
        raising=False,
    )
    with pytest.raises(KeyboardInterrupt):
        dataset.save("a new report that never finishes")
    monkeypatch.undo()
    assert dataset.load() == "complete report"
    assert files_under(tmp_path) == ["report.md"]


def test_an_unwritable_folder_gives_a_clear_error(tmp_path, monkeypatch):
    # Simulated: tests may run as root, for whom chmod does not forbid anything.
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(LocalFileOpener, "_open", refuse)
    with pytest.raises(DatasetError, match=r"cannot write .*table.csv: permission denied"):
        versioned(AtomicCSVDataset, tmp_path, "table.csv", "v1").save(pd.DataFrame({"a": [1]}))
    assert files_under(tmp_path) == []


def test_a_dict_of_figures_appears_whole(tmp_path, monkeypatch):
    failing_write(monkeypatch)
    dataset = versioned(AtomicMatplotlibDataset, tmp_path, "figures", "v1")
    with pytest.raises(DatasetError, match="the disk is full"):
        dataset.save({"a.png": figure("a"), "b.png": figure("b")})
    assert files_under(tmp_path) == []


def test_figures_save_and_overwrite_like_kedros(tmp_path):
    versioned(AtomicMatplotlibDataset, tmp_path, "figures", "v1").save(
        {"a.png": figure("a"), "b.png": figure("b")}
    )
    assert files_under(tmp_path / "figures") == ["v1", "v1/figures", "v1/figures/a.png",
                                                 "v1/figures/b.png"]  # fmt: skip
    kept = AtomicMatplotlibDataset(filepath=str(tmp_path / "kept"))
    kept.save({"a.png": figure("a")})
    kept.save({"b.png": figure("b")})
    assert files_under(tmp_path / "kept") == ["a.png", "b.png"]
    replaced = AtomicMatplotlibDataset(filepath=str(tmp_path / "replaced"), overwrite=True)
    replaced.save({"a.png": figure("a")})
    replaced.save({"b.png": figure("b")})
    assert files_under(tmp_path / "replaced") == ["b.png"]
    single = AtomicMatplotlibDataset(filepath=str(tmp_path / "one.png"))
    single.save(figure("one"))
    assert (tmp_path / "one.png").read_bytes().startswith(b"\x89PNG")


def test_a_version_is_still_never_overwritten(tmp_path):
    versioned(AtomicTextDataset, tmp_path, "notes.md", "v1").save("first")
    with pytest.raises(DatasetError, match="must not exist if versioning is enabled"):
        versioned(AtomicTextDataset, tmp_path, "notes.md", "v1").save("second")
    assert versioned(AtomicTextDataset, tmp_path, "notes.md", "v1").load() == "first"


def test_an_unversioned_marker_can_be_removed_but_never_a_version(tmp_path):
    marker = AtomicJSONDataset(filepath=str(tmp_path / "cells.json"))
    marker.save({"cells": {}})
    marker.remove()
    assert not marker.exists() and not (tmp_path / "cells.json").exists()
    marker.remove()  # already gone: nothing to do
    kept = versioned(AtomicTextDataset, tmp_path, "notes.md", "v1")
    kept.save("first")
    with pytest.raises(DatasetError, match="only an unversioned local file can be removed"):
        kept.remove()
    assert kept.load() == "first"


def test_every_file_the_catalog_writes_is_written_atomically():
    """Kedro's own file datasets write in place; each persisted entry must use a type that
    stages its writes (ours) so that a crash never leaves a file the next run loads."""
    atomic = {
        "efm_seg.framework.datasets.AtomicCSVDataset",
        "efm_seg.framework.datasets.AtomicJSONDataset",
        "efm_seg.framework.datasets.AtomicTextDataset",
        "efm_seg.framework.datasets.AtomicMatplotlibDataset",
        "efm_seg.framework.datasets.TorchCheckpointDataset",  # atomic_write
        "efm_seg.framework.datasets.NpzDataset",  # atomic_write
        "efm_seg.framework.datasets.OnnxModelDataset",  # atomic_write
        "efm_seg.framework.datasets.SampleStoreDataset",  # staged folder, swapped into place
        "efm_seg.framework.datasets.TrainingStateDataset",  # atomic_write, by the trainer
        # A staged folder (the demo's raw data).
        "efm_seg.framework.datasets.SyntheticSceneFolderDataset",
        "efm_seg.framework.datasets.PredictionFolderDataset",  # staged folder, renamed into place
        "efm_seg.framework.datasets.SceneFolderDataset",  # read only
        "MemoryDataset",
    }
    entries = yaml.safe_load(CATALOG.read_text())
    written_in_place = {
        name: e["type"]
        for name, e in entries.items()
        if not name.startswith("_") and e["type"] not in atomic  # "_x": a YAML anchor
    }
    assert written_in_place == {}
    for env in CATALOG.parents[1].iterdir():
        path = env / "catalog.yml"
        if env.name != "base" and path.is_file():
            for name, entry in (yaml.safe_load(path.read_text()) or {}).items():
                if isinstance(entry, dict) and "type" in entry and not name.startswith("raw"):
                    assert entry["type"] in atomic, f"{path}: {name}"
