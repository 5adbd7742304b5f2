"""The packaged project (`kedro package`): its wheel's dependencies, and the demo run from the
wheel and the conf tarball in an empty folder, with no source tree."""

from __future__ import annotations

import json
import zipfile
from email.parser import Parser

import pytest

from tests.conftest import latest_version
from tests.deploy.conftest import unpacked_conf

pytestmark = pytest.mark.slow


def test_the_wheel_declares_what_the_package_imports(deploy_env):
    with zipfile.ZipFile(deploy_env.wheel) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(name).decode())
        packaged = set(wheel.namelist())
    requires = metadata.get_all("Requires-Dist")
    always = {r.split(";")[0].strip() for r in requires if "extra ==" not in r}
    names = {r.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip() for r in always}
    # cv2, tqdm and safetensors are imported (directly or by smp); the tools are extras.
    assert {"opencv-python-headless", "tqdm", "safetensors", "torch", "kedro"} <= names
    assert not names & {"kedro-viz", "kedro-airflow", "pytest", "ruff"}
    datasets = next(r for r in always if r.startswith("kedro-datasets["))
    assert "matplotlib-matplotlibdataset" in datasets.split("]")[0]
    extras = set(metadata.get_all("Provides-Extra"))
    assert {"viz", "airflow"} <= extras
    # The code and nothing of the tests or the configuration (that is the tarball's).
    assert "efm_seg/framework/deployment.py" in packaged
    assert not any(n.startswith(("tests/", "conf/")) for n in packaged)


def test_the_packaged_demo_runs_from_the_conf_tarball(deploy_env, tmp_path):
    """The wheel's `efm-seg` command with --conf-source the tarball itself, in an empty folder:
    the data pipelines on the embedded demo data."""
    result = deploy_env.run(
        [
            "efm-seg",
            "--conf-source",
            str(deploy_env.conf_tarball),
            "--pipelines",
            "ingestion,preprocessing,split",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "data/local/01_raw/demo/images").is_dir()
    split = latest_version(tmp_path, "data/local/05_model_input/split.csv").read_text()
    assert len(split.splitlines()) > 40  # the demo's 40 scenes, tiled
    assert not (tmp_path / "src").exists() and not (tmp_path / "pyproject.toml").exists()


def test_the_packaged_demo_runs_from_data_to_report(deploy_env, tmp_path):
    """The whole default run from the wheel, with the tarball unpacked as on a worker (and the
    tests' tiny conf/local)."""
    conf = unpacked_conf(deploy_env, tmp_path)
    result = deploy_env.run(["efm-seg", "--conf-source", str(conf)], cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = latest_version(tmp_path, "data/local/08_reporting/report.html")
    record = json.loads(
        latest_version(
            tmp_path, "data/local/07_model_output/finetune/training_record.json"
        ).read_text()
    )
    # One run: its id is every output's version, and the report names it.
    assert record["lineage"]["run_id"] == report.parent.name
    assert report.parent.name in report.read_text()
