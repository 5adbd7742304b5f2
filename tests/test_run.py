"""End to end through a KedroSession: each data pipeline alone, the default run, environments."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from efm_seg.data.samples import open_store
from tests.conftest import kedro_run as run
from tests.conftest import latest_version, requires_shared


def latest(project: Path, relpath: str) -> pd.DataFrame:
    return pd.read_csv(latest_version(project, relpath))


def check_outputs(project: Path, n_sources: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    manifest = latest(project, "data/02_intermediate/manifest.csv")
    index = latest(project, "data/05_model_input/encoded_index.csv")
    split = latest(project, "data/05_model_input/split.csv")
    store = open_store(project / "data/05_model_input/encoded")
    assert len(manifest) == n_sources
    assert set(index["source_id"]) == set(manifest["sample_id"])
    assert list(store.ids) == list(index["sample_id"]) == list(split["sample_id"])
    assert set(split["split"]) == {"train", "val", "test"}
    # Leakage-free: no source image and no group in two splits.
    assert (split.groupby("source_id")["split"].nunique() == 1).all()
    assert (split.groupby("group")["split"].nunique() == 1).all()
    return manifest, split


def test_each_data_pipeline_runs_alone_on_the_demo(kedro_project):
    run(kedro_project, ["ingestion"])
    assert (kedro_project / "data/01_raw/demo/images/scene_000_sat.jpg").is_file()
    assert not (kedro_project / "data/05_model_input/encoded").exists()
    run(kedro_project, ["preprocessing"])
    assert not (kedro_project / "data/05_model_input/split.csv").exists()
    run(kedro_project, ["split"])
    manifest, _ = check_outputs(kedro_project, n_sources=10)
    assert [c for c in manifest.columns if c.startswith("px_")][:2] == [
        "px_bare_land",
        "px_building",
    ]
    image, labels = open_store(kedro_project / "data/05_model_input/encoded").read("scene_000")
    assert image.shape == (64, 64, 3) and labels.shape == (64, 64)
    first = latest(kedro_project, "data/05_model_input/split.csv")
    (kedro_project / "conf/local/parameters_split.yml").write_text(
        "split:\n  fractions: {train: 0.8, val: 0.1, test: 0.1}\n  seed: 1\n  group_by: group\n"
    )
    run(kedro_project, ["split"])  # a new version; the old one stays
    assert len(list((kedro_project / "data/05_model_input/split.csv").iterdir())) == 2
    _, second = check_outputs(kedro_project, n_sources=10)
    assert not second["split"].equals(first["split"])


@pytest.mark.slow
def test_default_run_goes_from_data_to_report(demo_run):
    check_outputs(demo_run, n_sources=10)
    for stage in ("baseline", "efm", "finetune"):
        assert latest_version(demo_run, f"data/06_models/{stage}/best_checkpoint.pt").is_file()
    assert latest_version(demo_run, "data/08_reporting/report.html").is_file()


def test_bad_input_writes_nothing(kedro_project):
    run(kedro_project, ["ingestion"])  # materialise the demo folder
    for version in (kedro_project / "data/02_intermediate/manifest.csv").iterdir():
        for f in version.iterdir():
            f.unlink()
        version.rmdir()
    (kedro_project / "data/01_raw/demo/masks/scene_003_mask.png").unlink()
    with pytest.raises(Exception, match=r"scene_003_sat\.jpg"):
        run(kedro_project, ["ingestion"])
    assert list((kedro_project / "data/02_intermediate/manifest.csv").iterdir()) == []


@pytest.mark.realdata
def test_dubai_environment(kedro_project):
    root = requires_shared("dubai_aerial")
    run(kedro_project, ["ingestion", "preprocessing", "split"], env="dubai", raw_root=str(root))
    manifest, split = check_outputs(kedro_project, n_sources=54)
    assert manifest["group"].nunique() == 6
    assert manifest.groupby("group")["width"].max().nunique() == 6  # sizes differ per tile
    assert split.groupby("split")["group"].nunique().to_dict() == {"test": 1, "train": 4, "val": 1}


@pytest.mark.realdata
def test_loveda_environment(kedro_project):
    root = requires_shared("loveda_sample")
    run(kedro_project, ["ingestion", "preprocessing", "split"], env="loveda", raw_root=str(root))
    manifest, split = check_outputs(kedro_project, n_sources=3)
    assert len(split) == 12  # 1024² tiles → four 512² patches each
    pixels = manifest[[c for c in manifest.columns if c.startswith("px_")]].sum(axis=1)
    assert (pixels == manifest["width"] * manifest["height"]).all()
    assert manifest.filter(like="px_").columns[0] == "px_background"  # ids 1..7, 0 ignored
