"""Checkpoint and .npz datasets: round trips, versions, atomic writes, no unpickling on load."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from kedro.io import DatasetError
from kedro.io.core import Version

from efm_seg.framework.datasets.checkpoint import NpzDataset, TorchCheckpointDataset


class Payload:
    """Anything that is not a tensor or a plain value."""

    def __init__(self, value: int = 1) -> None:
        self.value = value


def checkpoint(value: float = 1.0) -> dict:
    return {
        "format": "efm-seg-checkpoint/1",
        "state_dict": {"w": torch.full((2, 3), value), "n": torch.tensor(3)},
        "classes": ["land", "water"],
        "metrics": {"val_iou": 0.5, "history": [1, 2.5, None]},
        "ema": True,
        "shape": (64, 64),
    }


def arrays(value: int = 1) -> dict[str, np.ndarray]:
    return {
        "efm": np.full((2, 4, 4), value, np.uint8),
        "entropy": np.linspace(0, 1, 8, dtype=np.float16),
        "ids": np.array(["s1", "s10"]),
    }


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def assert_same_arrays(loaded, expected):
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype and np.array_equal(loaded[key], value)


# -- round trips ----------------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    dataset = TorchCheckpointDataset(filepath=str(tmp_path / "models" / "best.pt"))
    assert not dataset.exists()
    dataset.save(checkpoint(2.0))
    assert dataset.exists()
    loaded = dataset.load()
    assert torch.equal(loaded["state_dict"]["w"], torch.full((2, 3), 2.0))
    assert loaded["classes"] == ["land", "water"] and loaded["metrics"]["history"] == [1, 2.5, None]
    assert loaded["shape"] == (64, 64) and loaded["ema"] is True
    assert files(tmp_path) == ["models/best.pt"]


def test_npz_round_trip(tmp_path):
    dataset = NpzDataset(filepath=str(tmp_path / "snapshots.npz"))
    assert not dataset.exists()
    dataset.save(arrays(3))
    loaded = dataset.load()
    assert type(loaded) is dict
    assert_same_arrays(loaded, arrays(3))
    assert files(tmp_path) == ["snapshots.npz"]


@pytest.mark.parametrize(
    ("cls", "data", "name"),
    [(TorchCheckpointDataset, checkpoint, "best.pt"), (NpzDataset, arrays, "maps.npz")],
)
def test_versions(tmp_path, cls, data, name):
    path = str(tmp_path / name)
    cls(filepath=path, version=Version(None, "2024-01-01T00.00.00.000Z")).save(data(1))
    cls(filepath=path, version=Version(None, "2024-01-02T00.00.00.000Z")).save(data(2))
    assert files(tmp_path) == [
        f"{name}/2024-01-01T00.00.00.000Z/{name}",
        f"{name}/2024-01-02T00.00.00.000Z/{name}",
    ]
    latest = cls(filepath=path, version=Version(None, None))
    first = cls(filepath=path, version=Version("2024-01-01T00.00.00.000Z", None))
    assert latest.exists() and first.exists()

    def value(loaded):
        return int(
            loaded["state_dict"]["w"][0, 0] if "state_dict" in loaded else loaded["efm"][0, 0, 0]
        )

    assert value(latest.load()) == 2
    assert value(first.load()) == 1
    with pytest.raises(DatasetError, match="must not exist"):  # versions are never overwritten
        cls(filepath=path, version=Version(None, "2024-01-01T00.00.00.000Z")).save(data(3))
    assert value(first.load()) == 1
    assert not cls(filepath=str(tmp_path / "other"), version=Version(None, None)).exists()


def test_catalog_entries_work_versioned(tmp_path):
    from kedro.io import DataCatalog

    catalog = DataCatalog.from_config(
        {
            "best": {
                "type": "efm_seg.framework.datasets.checkpoint.TorchCheckpointDataset",
                "filepath": str(tmp_path / "best.pt"),
                "versioned": True,
                "load_args": {"map_location": "cpu"},
            },
            "maps": {
                "type": "efm_seg.framework.datasets.checkpoint.NpzDataset",
                "filepath": str(tmp_path / "maps.npz"),
                "versioned": True,
            },
        }
    )
    catalog.save("best", checkpoint(4.0))
    catalog.save("maps", arrays(4))
    assert catalog.load("best")["state_dict"]["w"][0, 0] == 4.0
    assert_same_arrays(catalog.load("maps"), arrays(4))
    assert len(list((tmp_path / "best.pt").iterdir())) == 1


def test_local_files_only_and_checked_load_args(tmp_path):
    with pytest.raises(DatasetError, match="local files only"):
        TorchCheckpointDataset(filepath="s3://bucket/best.pt")
    with pytest.raises(DatasetError, match="weights_only=True"):
        TorchCheckpointDataset(filepath=str(tmp_path / "x.pt"), load_args={"weights_only": False})


# -- atomic writes --------------------------------------------------------------------------------
def _partial_writer(written: list):
    def write(data, file, *args, **kwargs):
        file.write(b"PK\x03\x04 partial")
        written.append(file.tell())
        raise OSError("disk full")

    return write


@pytest.mark.parametrize("versioned", [False, True])
def test_a_failed_checkpoint_save_leaves_no_trace(tmp_path, monkeypatch, versioned):
    path = str(tmp_path / "best.pt")
    old = Version(None, "2024-01-01T00.00.00.000Z") if versioned else None
    TorchCheckpointDataset(filepath=path, version=old).save(checkpoint(1.0))
    before = files(tmp_path)
    written: list = []
    monkeypatch.setattr(torch, "save", _partial_writer(written))
    new = Version(None, "2024-01-02T00.00.00.000Z") if versioned else None
    with pytest.raises(DatasetError, match="disk full"):
        TorchCheckpointDataset(filepath=path, version=new).save(checkpoint(2.0))
    assert written  # the failure happened mid-write
    assert files(tmp_path) == before  # no temporary file, no half-written version
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_dir()) == (
        ["2024-01-01T00.00.00.000Z", "best.pt"] if versioned else []
    )
    latest = TorchCheckpointDataset(
        filepath=path, version=Version(None, None) if versioned else None
    )
    assert latest.load()["state_dict"]["w"][0, 0] == 1.0


@pytest.mark.parametrize("versioned", [False, True])
def test_a_failed_npz_save_leaves_no_trace(tmp_path, monkeypatch, versioned):
    path = str(tmp_path / "maps.npz")
    old = Version(None, "2024-01-01T00.00.00.000Z") if versioned else None
    NpzDataset(filepath=path, version=old).save(arrays(1))
    before = files(tmp_path)
    written: list = []

    def explode(file, *args, **kwargs):
        _partial_writer(written)(None, file)

    monkeypatch.setattr(np, "savez_compressed", explode)
    new = Version(None, "2024-01-02T00.00.00.000Z") if versioned else None
    with pytest.raises(DatasetError, match="disk full"):
        NpzDataset(filepath=path, version=new).save(arrays(2))
    assert written
    assert files(tmp_path) == before
    latest = NpzDataset(filepath=path, version=Version(None, None) if versioned else None)
    assert_same_arrays(latest.load(), arrays(1))


# -- no unpickling --------------------------------------------------------------------------------
def test_checkpoint_save_refuses_what_a_weights_only_load_cannot_read(tmp_path):
    dataset = TorchCheckpointDataset(filepath=str(tmp_path / "best.pt"))
    with pytest.raises(DatasetError, match=r"checkpoint\['metrics'\]\['x'\] is a .*Payload"):
        dataset.save({"metrics": {"x": Payload()}})
    with pytest.raises(DatasetError, match="a checkpoint is a dict"):
        dataset.save([torch.zeros(1)])
    assert files(tmp_path) == []


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_checkpoint_load_never_unpickles_arbitrary_objects(tmp_path, writer):
    path = tmp_path / "best.pt"
    data = {"state_dict": {"w": torch.zeros(2)}, "extra": Payload(7)}
    if writer == "torch":
        torch.save(data, path)
    else:
        path.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(DatasetError, match="weights_only=True"):
        TorchCheckpointDataset(filepath=str(path)).load()


def test_npz_save_accepts_only_named_arrays(tmp_path):
    dataset = NpzDataset(filepath=str(tmp_path / "maps.npz"))
    with pytest.raises(DatasetError, match="'efm' is a list, not a NumPy array"):
        dataset.save({"efm": [1, 2, 3]})
    with pytest.raises(DatasetError, match="'ids' is an object array"):
        dataset.save({"ids": np.array(["a", 1], dtype=object)})
    with pytest.raises(DatasetError, match="array names must be non-empty strings"):
        dataset.save({1: np.zeros(2)})
    with pytest.raises(DatasetError, match="dict of NumPy arrays"):
        dataset.save(np.zeros(2))
    with pytest.raises(DatasetError, match="clash"):
        dataset.save({"file": np.zeros(2)})
    assert files(tmp_path) == []


def test_npz_load_refuses_pickled_arrays(tmp_path):
    path = tmp_path / "maps.npz"
    np.savez(path, ids=np.array([Payload()], dtype=object))
    with pytest.raises(DatasetError, match="allow_pickle=False"):
        NpzDataset(filepath=str(path)).load()


def test_describe_names_the_file(tmp_path):
    dataset = TorchCheckpointDataset(filepath=str(tmp_path / "best.pt"))
    assert "best.pt" in str(dataset) and "map_location" in str(dataset)
