"""End to end through a KedroSession: each data pipeline alone, the default run, environments."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from kedro.framework.cli.cli import KedroCLI

from efm_seg.data.samples import open_store
from tests.conftest import kedro_run as run
from tests.conftest import latest_version, requires_shared


def latest(project: Path, relpath: str) -> pd.DataFrame:
    return pd.read_csv(latest_version(project, relpath))


def check_outputs(
    project: Path, n_sources: int, env: str = "local"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The data pipelines' outputs in ``env``'s own data root, consistent with each other."""
    manifest = latest(project, f"data/{env}/02_intermediate/manifest.csv")
    index = latest(project, f"data/{env}/05_model_input/encoded_index.csv")
    split = latest(project, f"data/{env}/05_model_input/split.csv")
    store = open_store(project / f"data/{env}/05_model_input/encoded")
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
    assert (kedro_project / "data/local/01_raw/demo/images/scene_000_sat.jpg").is_file()
    assert not (kedro_project / "data/local/05_model_input/encoded").exists()
    run(kedro_project, ["preprocessing"])
    assert not (kedro_project / "data/local/05_model_input/split.csv").exists()
    run(kedro_project, ["split"])
    manifest, _ = check_outputs(kedro_project, n_sources=10)
    assert [c for c in manifest.columns if c.startswith("px_")][:2] == [
        "px_bare_land",
        "px_building",
    ]
    image, labels = open_store(kedro_project / "data/local/05_model_input/encoded").read(
        "scene_000"
    )
    assert image.shape == (64, 64, 3) and labels.shape == (64, 64)
    first = latest(kedro_project, "data/local/05_model_input/split.csv")
    # Through the real command line, with a conf/local that has parameter files: the seed
    # changes and the rest of the split block stays (fractions, group_by).
    result = CliRunner().invoke(
        KedroCLI(project_path=kedro_project),
        ["run", "--pipelines", "split", "--params", "split.seed=1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output  # a new version; the old one stays
    assert len(list((kedro_project / "data/local/05_model_input/split.csv").iterdir())) == 2
    _, second = check_outputs(kedro_project, n_sources=10)
    assert not second["split"].equals(first["split"])


@pytest.mark.slow
def test_default_run_goes_from_data_to_report(demo_run):
    check_outputs(demo_run, n_sources=10)
    for stage in ("baseline", "efm", "finetune", "baseline_equal"):
        assert latest_version(
            demo_run, f"data/local/06_models/{stage}/best_checkpoint.pt"
        ).is_file()
    assert latest_version(demo_run, "data/local/08_reporting/report.html").is_file()


def test_each_environment_keeps_its_own_data(kedro_project):
    """A second environment (here a smaller preprocessing size) reads and writes only its own
    data root: neither run sees, replaces or trains on the other's store."""
    (kedro_project / "conf/small").mkdir()
    shutil.copy(kedro_project / "conf/local/catalog.yml", kedro_project / "conf/small")
    (kedro_project / "conf/small/parameters_preprocessing.yml").write_text(
        "preprocessing:\n  mode: resize\n  size: 32\n  stride: null\n"
        "  image_filter: lanczos\n  workers: 1\n"
    )
    data = ["ingestion", "preprocessing", "split"]
    run(kedro_project, data)
    run(kedro_project, data, env="small")
    check_outputs(kedro_project, n_sources=10, env="local")
    check_outputs(kedro_project, n_sources=10, env="small")
    local = open_store(kedro_project / "data/local/05_model_input/encoded")
    small = open_store(kedro_project / "data/small/05_model_input/encoded")
    assert local.read("scene_000")[0].shape == (64, 64, 3)
    assert small.read("scene_000")[0].shape == (32, 32, 3)
    assert sorted(p.name for p in (kedro_project / "data").iterdir()) == ["local", "small"]


def test_bad_input_writes_nothing(kedro_project):
    run(kedro_project, ["ingestion"])  # materialise the demo folder
    for version in (kedro_project / "data/local/02_intermediate/manifest.csv").iterdir():
        for f in version.iterdir():
            f.unlink()
        version.rmdir()
    (kedro_project / "data/local/01_raw/demo/masks/scene_003_mask.png").unlink()
    with pytest.raises(Exception, match=r"scene_003_sat\.jpg"):
        run(kedro_project, ["ingestion"])
    assert list((kedro_project / "data/local/02_intermediate/manifest.csv").iterdir()) == []
    assert not (kedro_project / "data/local/.run.lock").exists()  # released after the failure


@pytest.mark.realdata
def test_dubai_environment(kedro_project):
    root = requires_shared("dubai_aerial")
    run(kedro_project, ["ingestion", "preprocessing", "split"], env="dubai", raw_root=str(root))
    manifest, split = check_outputs(kedro_project, n_sources=54, env="dubai")
    assert manifest["group"].nunique() == 6
    assert manifest.groupby("group")["width"].max().nunique() == 6  # sizes differ per tile
    assert split.groupby("split")["group"].nunique().to_dict() == {"test": 1, "train": 4, "val": 1}


@pytest.mark.realdata
def test_loveda_environment(kedro_project):
    root = requires_shared("loveda_sample")
    run(kedro_project, ["ingestion", "preprocessing", "split"], env="loveda", raw_root=str(root))
    manifest, split = check_outputs(kedro_project, n_sources=3, env="loveda")
    assert len(split) == 12  # 1024² tiles → four 512² patches each
    pixels = manifest[[c for c in manifest.columns if c.startswith("px_")]].sum(axis=1)
    assert (pixels == manifest["width"] * manifest["height"]).all()
    assert manifest.filter(like="px_").columns[0] == "px_background"  # ids 1..7, 0 ignored
