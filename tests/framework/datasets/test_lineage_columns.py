"""Score tables read their lineage (fingerprints, run ids) back as the text the nodes wrote."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog

from tests.conftest import PROJECT_ROOT

CATALOG = PROJECT_ROOT / "conf/base/catalog.yml"


@pytest.mark.parametrize(
    "name",
    [
        "{stage}.test_metrics",
        "evaluation_metrics",
        "study.{arch}.{fold}.{seed}.{run}.{stage}.scores",
    ],
)
def test_score_tables_keep_fingerprints_as_text(tmp_path, name):
    entry = yaml.safe_load(CATALOG.read_text())[name]
    entry = entry | {"filepath": str(tmp_path / "scores.csv"), "versioned": False}
    catalog = DataCatalog.from_config({"scores": entry})
    written = pd.DataFrame(
        {
            "tta": [False, True],
            "miou": [0.5, 0.6],
            "recipe": ["9983765e19592328"] * 2,  # a hex digest that reads as a float
            "checkpoint_run": ["2026-11-24T22.07.19.204Z"] * 2,
            "init_stage": ["", ""],  # a cell started from new weights
            "init_run": ["", ""],
            "store": ["1234567800000000"] * 2,  # all digits: would read as an integer
            "evaluation": ["0000000000000012"] * 2,  # ... and lose its zeros
        }
    )
    catalog.save("scores", written)
    read = catalog.load("scores")
    assert read["recipe"].tolist() == ["9983765e19592328"] * 2
    assert read["store"].tolist() == ["1234567800000000"] * 2
    assert read["evaluation"].tolist() == ["0000000000000012"] * 2
    assert read["init_run"].isna().all()  # empty: read as "no parent"
    assert read["tta"].tolist() == [False, True]
