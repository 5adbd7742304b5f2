"""The study's catalog entries read back what the nodes wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from kedro.io import DataCatalog

CATALOG = Path(__file__).resolve().parents[2] / "conf/base/catalog.yml"


def test_cell_scores_keep_fingerprints_as_text(tmp_path):
    entry = yaml.safe_load(CATALOG.read_text())["study.{arch}.{seed}.{run}.{stage}.scores"]
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
            "store": ["1234567800000000"] * 2,
        }
    )
    catalog.save("scores", written)
    read = catalog.load("scores")
    assert read["recipe"].tolist() == ["9983765e19592328"] * 2
    assert read["store"].tolist() == ["1234567800000000"] * 2
    assert read["init_run"].isna().all()  # empty: the study reads it as "no parent"
    assert read["tta"].tolist() == [False, True]
