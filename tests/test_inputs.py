"""Inputs a user's data can bring: linked folders, huge or lossy files, debris, missing versions.

Each case runs through a KedroSession on tiny generated data, in a dataset environment of the
throw-away project (``conf/mine``) that reads a raw folder written by the test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import Version

from efm_seg.data.raw import RawFolder
from efm_seg.framework.datasets import TorchCheckpointDataset
from efm_seg.framework.hooks.lock import LOCK_NAME
from tests.conftest import DATASET_PARAMS, kedro_run, latest_version, write_pair


def dataset_env(project: Path, raw: Path, **catalog_args) -> str:
    """``conf/mine``: the tiny palette dataset at ``raw``, ``{tile}/images/{id}.jpg`` layout."""
    env = project / "conf" / "mine"
    env.mkdir(exist_ok=True)
    entry = {
        "type": "efm_seg.framework.datasets.ImageFolderDataset",
        "path": str(raw),
        **catalog_args,
    }
    (env / "catalog.yml").write_text(yaml.safe_dump({"raw_dataset": entry}))
    ingestion = {
        "images": "{tile}/images/{id}.jpg",
        "masks": "{tile}/masks/{id}.*",
        "group_by": "tile",
        "workers": 1,
    }
    (env / "parameters.yml").write_text(
        yaml.safe_dump({"dataset": DATASET_PARAMS, "ingestion": ingestion})
    )
    return "mine"


def manifest(project: Path) -> pd.DataFrame:
    return pd.read_csv(latest_version(project, "data/mine/02_intermediate/manifest.csv"))


def test_linked_folders_are_followed_without_looping(kedro_project, tmp_path):
    raw, elsewhere = tmp_path / "raw", tmp_path / "elsewhere"
    for i in range(2):
        write_pair(raw / "tileA", f"a{i}", seed=i)
        write_pair(elsewhere / "tileB", f"b{i}", seed=10 + i)
    (raw / "tileB").symlink_to(elsewhere / "tileB", target_is_directory=True)
    (raw / "tileA" / "images" / "loop").symlink_to(raw, target_is_directory=True)  # a cycle
    kedro_run(kedro_project, ["ingestion"], env=dataset_env(kedro_project, raw))
    assert sorted(manifest(kedro_project)["group"]) == ["tileA", "tileA", "tileB", "tileB"]
    files = RawFolder(raw).list_files()  # each real file once: the cycle is not walked
    assert len(files) == 8 and not any("loop" in f for f in files)


def test_an_image_over_the_pixel_guard_names_the_file_and_the_setting(kedro_project, tmp_path):
    raw = tmp_path / "raw"
    for i in range(2):
        write_pair(raw / "tileA", f"a{i}", size=(48, 40), seed=i)  # 1920 px each
    env = dataset_env(kedro_project, raw, max_image_pixels=500)  # refused above 2 × 500
    with pytest.raises(Exception, match=r"tileA/images/a0\.jpg.*max_image_pixels") as error:
        kedro_run(kedro_project, ["ingestion"], env=env)
    assert "nothing was written" in str(error.value)
    assert not (kedro_project / "data/mine/02_intermediate").exists()
    dataset_env(kedro_project, raw, max_image_pixels=10_000)
    kedro_run(kedro_project, ["ingestion"], env=env)
    assert len(manifest(kedro_project)) == 2


def test_a_jpeg_mask_gets_the_lossless_hint(kedro_project, tmp_path):
    raw = tmp_path / "raw"
    for i in range(2):
        write_pair(raw / "tileA", f"a{i}", seed=i, mask_template="masks/{id}.jpg")
    with pytest.raises(Exception, match=r"lossy.*masks must be stored losslessly"):
        kedro_run(kedro_project, ["ingestion"], env=dataset_env(kedro_project, raw))


def test_debris_of_interrupted_writes_is_removed_by_the_next_run(kedro_project):
    kedro_run(kedro_project, ["ingestion", "preprocessing"])
    root = kedro_project / "data/local"
    staging = root / "05_model_input/.encoded.tmp-0123abcd/images"
    staging.mkdir(parents=True)
    (staging / "scene_000.png").write_bytes(b"half a png")
    (root / "05_model_input/.encoded.old-89abcdef").mkdir()
    version = root / "06_models/baseline/best_checkpoint.pt/2026-11-24T08.00.00.000Z"
    version.mkdir(parents=True)
    (version / ".best_checkpoint.pt.k3j2h1.tmp").write_bytes(b"half a checkpoint")
    kept = root / "02_intermediate/notes.tmp.txt"  # not a staging name
    kept.write_text("mine")
    kedro_run(kedro_project, ["split"])
    assert sorted(p.name for p in (root / "05_model_input").iterdir()) == [
        "encoded",
        "encoded_index.csv",
        "split.csv",
    ]
    assert not version.exists()  # the version folder held only the debris
    assert kept.read_text() == "mine"
    assert not (root / LOCK_NAME).exists()


def test_missing_checkpoint_versions_get_plain_messages(kedro_project):
    """What ``kedro run --pipelines efm`` says before any baseline ran, and what
    ``--load-versions baseline.best_checkpoint:<a version never saved>`` says."""
    bootstrap_project(kedro_project)
    with KedroSession.create(project_path=kedro_project) as session:
        catalog = session.load_context().catalog
    with pytest.raises(
        Exception, match=r"nothing has been saved at .*baseline.*--pipelines baseline"
    ):
        catalog.load("baseline.best_checkpoint")
    saved, missing = "2026-11-24T08.00.00.000Z", "2026-01-01T00.00.00.000Z"
    folder = kedro_project / "data/local/06_models/baseline/best_checkpoint.pt"
    (folder / saved).mkdir(parents=True)
    os.link(__file__, folder / saved / "best_checkpoint.pt")  # any file: it is never read
    requested = TorchCheckpointDataset(filepath=str(folder), version=Version(missing, None))
    with pytest.raises(Exception, match=rf"version {missing} .*saved versions: {saved}"):
        requested.load()


def test_a_folders_pixel_guard_stays_with_that_folder(tmp_path):
    write_pair(tmp_path / "raw" / "tileA", "a0", size=(48, 40))
    strict = RawFolder(tmp_path / "raw", max_image_pixels=500)
    with pytest.raises(ValueError, match="max_image_pixels"):
        strict.open("tileA/images/a0.jpg")
    assert RawFolder(tmp_path / "raw").open("tileA/images/a0.jpg").size == (40, 48)
