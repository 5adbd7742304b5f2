"""Faults met by real runs: a full disk or a read-only folder mid-run, a version that does not
exist, a checkpoint of other classes, a pickle planted as a checkpoint. Each gives a clear error,
and nothing half-written (or planted) is ever loaded."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
import yaml
from fsspec.implementations.local import LocalFileOpener
from kedro.io import DatasetError

from efm_seg.basics.atomic import OutputWriteError
from efm_seg.framework.hooks.checks import LoadVersionError
from efm_seg.framework.hooks.lock import _DEBRIS
from tests.conftest import kedro_run as run
from tests.conftest import latest_version
from tests.conftest import saved_versions as versions

pytestmark = pytest.mark.slow

ROOT = "data/local"


@pytest.fixture
def project(demo_copy: Path) -> Path:
    return demo_copy


def snapshot(project: Path) -> dict[str, int]:
    """Every file under the data root, with its size."""
    root = project / ROOT
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def debris(project: Path) -> list[Path]:
    return [p for p in (project / ROOT).rglob("*") if _DEBRIS.match(p.name)]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("write", r"the disk is full.*\(ENOSPC\)"),
        ("open", r"permission denied: make the folder writable by this user \(EACCES\)"),
    ],
)
def test_a_failed_write_mid_run_names_the_file_and_leaves_nothing_half_written(
    project, monkeypatch, fault, message
):
    """The disk fills up (or the folder turns read-only) as the report's tables are written."""
    before = versions(project, "08_reporting/tables.md")

    def failing_write(self, data):
        if os.path.basename(self.path).startswith(".tables.md"):  # its staging file
            self.f.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)

    real_open = LocalFileOpener._open

    def failing_open(self):
        if os.path.basename(self.path).startswith(".tables.md"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(self)

    if fault == "write":
        monkeypatch.setattr(LocalFileOpener, "write", failing_write, raising=False)
    else:
        monkeypatch.setattr(LocalFileOpener, "_open", failing_open)
    with pytest.raises(DatasetError, match=rf"cannot write .*08_reporting/tables.md/.*{message}"):
        run(project, ["reporting"])
    monkeypatch.undo()
    monkeypatch.chdir(project)

    assert versions(project, "08_reporting/tables.md") == before  # no new, partial version
    assert debris(project) == []
    assert not (project / ROOT / ".run.lock").exists()  # the lock was given back
    run(project, ["reporting"])  # once fixed, the same command works
    assert latest_version(project, f"{ROOT}/08_reporting/tables.md").read_text().startswith("#")


def test_an_unwritable_data_root_stops_the_run_before_anything_is_written(project, monkeypatch):
    # Simulated (tests may run as root, whom chmod does not stop): creating files in the data
    # root fails as it does in a read-only folder.
    root = str(project / ROOT)
    real_open = os.open

    def read_only_root(path, flags, *args, **kwargs):
        if str(path).startswith(root) and flags & (os.O_CREAT | os.O_WRONLY):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    before = snapshot(project)
    monkeypatch.setattr(os, "open", read_only_root)
    with pytest.raises(OutputWriteError, match=r"cannot write .*data/local/.run.lock: permission"):
        run(project, ["reporting"])
    monkeypatch.undo()
    assert snapshot(project) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders regardless")
def test_a_read_only_data_root_really_stops_the_run(project):
    root = project / ROOT
    before = snapshot(project)
    root.chmod(0o555)
    try:
        with pytest.raises(OutputWriteError, match="permission denied"):
            run(project, ["reporting"])
    finally:
        root.chmod(0o755)
    assert snapshot(project) == before


@pytest.mark.parametrize("name", ["baseline.best_checkpoint", "split"])
def test_a_missing_load_version_is_refused_before_anything_runs(project, name):
    before = snapshot(project)
    saved = ", ".join(
        versions(project, "06_models/baseline/best_checkpoint.pt")
        if name == "baseline.best_checkpoint"
        else versions(project, "05_model_input/split.csv")
    )
    with pytest.raises(
        LoadVersionError,
        match=rf"--load-versions {name}:2020-01-01T00.00.00.000Z: there is no such version "
        rf"of {name} .*; saved versions: {saved}. Nothing was run",
    ):
        run(project, ["evaluation"], load_versions={name: "2020-01-01T00.00.00.000Z"})
    assert snapshot(project) == before


def test_a_checkpoint_trained_on_other_classes_is_refused(project):
    """The configuration now names the classes differently from what the stages learned."""
    params = yaml.safe_load((project / "conf/base/parameters.yml").read_text())
    classes = params["dataset"]["classes"]
    params["dataset"]["classes"] = {
        ("soil" if name == "bare_land" else name): colour for name, colour in classes.items()
    }
    (project / "conf/local/parameters.yml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = snapshot(project)
    with pytest.raises(
        ValueError,
        match=r"baseline: the checkpoint was trained on classes \['bare_land', 'building', .*\], "
        r"but dataset.classes is \['soil', 'building', ",
    ):
        run(project, ["evaluation"])
    assert snapshot(project) == before


def test_a_pickle_planted_as_the_latest_checkpoint_is_refused_and_never_runs(project, tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    planted = project / ROOT / "06_models/baseline/best_checkpoint.pt/2999-01-01T00.00.00.000Z"
    planted.mkdir()
    torch.save({"state_dict": Payload()}, planted / "best_checkpoint.pt")
    # The crafted file is live: unpickled without weights_only, it runs.
    torch.load(planted / "best_checkpoint.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(
        DatasetError,
        match=r"cannot load the checkpoint .*2999-01-01T00.00.00.000Z/best_checkpoint.pt with "
        r"torch.load\(weights_only=True\)",
    ):
        run(project, ["efm"])
    assert not marker.exists()
