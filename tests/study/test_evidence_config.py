"""The evidence study's environment (conf/evidence): the Dubai data exactly as conf/dubai reads
them, and a grid that is valid and is the protocol the write-up describes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from efm_seg.framework.config_loader import ProjectConfigLoader
from efm_seg.parameters import StudyParams, TrainingParams
from efm_seg.study.grid import cells

CONF = Path(__file__).resolve().parents[2] / "conf"


def loaded(env: str):
    return ProjectConfigLoader(conf_source=str(CONF), base_env="base", env=env)


def test_the_evidence_environment_reads_the_dubai_data_as_conf_dubai():
    evidence, dubai = loaded("evidence"), loaded("dubai")
    assert evidence["catalog"]["raw_dataset"] == dubai["catalog"]["raw_dataset"]
    for block in ("dataset", "ingestion"):
        assert evidence["parameters"][block] == dubai["parameters"][block]


def test_the_grid_is_leave_one_tile_out_with_the_one_run_and_alternative_losses():
    parameters = loaded("evidence")["parameters"]
    study = StudyParams.model_validate(parameters["study"])
    tiles = [f"Tile {k}" for k in range(1, 7)]
    tested = [next(p for p, s in fold.items() if s == "test") for fold in study.folds.values()]
    assert sorted(tested) == tiles  # every tile is a test area once
    one_run = {name for name, v in study.variants.items() if v.single_run}
    assert {"efm_one_run", "ohem", "focal", "lovasz"} <= one_run
    assert {"full", "init_previous", "error_only"} <= set(study.variants) - one_run
    recipe = TrainingParams.model_validate(parameters["training"])
    assert recipe.checkpoint == "last" and recipe.ema.enabled
    grid = list(cells(study))
    assert (
        len(grid)
        == 6 * len(study.seeds) * (2 + len(one_run) + 2 * (len(study.variants) - len(one_run)))
        + 6 * 2 * 5
    )
    # The power rule's response (docs/study/2026-12-06-evidence, "Power"): seeds 3 and 4 for
    # the first tier only.
    assert study.extra_seeds.model_dump() == {
        "seeds": [3, 4],
        "runs": ["baseline_equal", "efm_one_run", "ohem", "focal", "lovasz"],
    }
    raw = yaml.safe_load((CONF / "evidence/parameters_study.yml").read_text())
    # 180 epochs in one run: at 90 and at 135 more than two folds' reference runs were still
    # improving (docs/study/2026-12-06-evidence), and 180 is the longest fixed beforehand.
    assert raw["study"]["epochs"] == {"baseline": 80, "efm": 80, "finetune": 20}
    assert study.convergence.model_dump() == {
        "last_fraction": 0.2,
        "tolerance": 0.005,
        "failing_folds": 2,
    }  # the pre-registered plateau rule


def test_the_complete_evidence_grid_summarizes():
    """The end of the evidence study, without its hours of training: every cell of the grid
    scored under the recipe the current configuration gives it (fine-tuning from its EFM stage,
    `init_previous` from the seed's baseline) is one study, and its summary compares every run
    with the reference on all its pairs (24 for the first tier, which trains seeds 3 and 4 too,
    12 for the rest), in the tables and the figure."""
    from efm_seg.study.analysis import METRICS
    from efm_seg.study.cells import StaleCellError
    from efm_seg.study.convergence import convergence_table
    from efm_seg.study.grid import REFERENCE, expected_fingerprint
    from efm_seg.study.summary import summarize

    parameters = loaded("evidence")["parameters"]
    study = StudyParams.model_validate(parameters["study"])
    training = parameters["training"]
    overrides = {stage: parameters[stage]["overrides"] for stage in ("baseline", "efm", "finetune")}
    grid = list(cells(study))
    runs = {cell: f"2026-12-07T0{k % 10}.00.00.{k:03d}Z" for k, cell in enumerate(grid)}
    initialised = {
        cell for cell in grid
        if cell.stage == "finetune" or (cell.stage == "efm" and cell.run == "init_previous")
    }  # fmt: skip
    rng = np.random.default_rng(1)
    rows = [
        {"arch": cell.arch, "fold": cell.fold, "seed": cell.seed, "run": cell.run,
         "stage": cell.stage, "tta": tta, **{m: rng.uniform(0.1, 0.5) for m in METRICS},
         "checkpoint_epoch": 180, "checkpoint_run": runs[cell],
         "init_stage": cell.parent.stage if cell in initialised else "",
         "init_run": runs[cell.parent] if cell in initialised else "",
         "recipe": expected_fingerprint(
             study, cell, training, overrides[cell.stage], parameters["efm_method"]
         )}
        for cell in grid
        for tta in (False, True)
    ]  # fmt: skip
    references = {
        cell: pd.DataFrame({"epoch": range(1, 181), "val_iou": 0.3, "run_id": runs[cell]})
        for cell in grid
        if cell.run == REFERENCE
    }
    convergence = convergence_table(references, study.convergence)

    per_seed, summary, paired, per_fold, tables, figure, record = summarize(
        study, training, parameters["efm_method"], *overrides.values(), convergence,
        *(pd.DataFrame([row]) for row in rows),
    )  # fmt: skip

    compared = set(study.variants) | {"baseline"}
    first_tier = {"efm_one_run", "ohem", "focal", "lovasz"}
    assert len(per_seed) == len(grid) == 240 and len(record["cells"]) == len(grid)
    assert dict(zip(summary["run"], summary["seeds"], strict=True)) == {
        run: 24 if run in first_tier | {REFERENCE} else 12 for run in compared | {REFERENCE}
    }
    mious = paired[paired["metric"] == "miou"]
    assert set(mious["run"]) == compared
    assert dict(zip(mious["run"], mious["seeds"], strict=True)) == {
        run: 24 if run in first_tier else 12 for run in compared
    }
    assert mious["p_holm"].notna().all() and (mious["p_holm"] >= mious["p"]).all()
    assert set(per_fold.loc[per_fold["run"] == "ohem", "seeds"]) == {4}
    assert per_fold["fold"].nunique() == 6
    assert all(run in tables for run in compared)
    assert "seeds [1, 2] (and 3, 4 for `baseline_equal`" in tables
    assert "12 or 24 pairs: 6 folds × 2 or 4 seeds" in figure.get_suptitle()

    # An extra seed's cell is part of the grid: without its scores, the study is not complete.
    missing = "study.FPN.t4.seed3.ohem.baseline"
    with pytest.raises(StaleCellError, match=f"{missing}: no scores"):
        summarize(
            study, training, parameters["efm_method"], *overrides.values(), convergence,
            *(pd.DataFrame([row]) for row in rows
              if (row["fold"], row["seed"], row["run"]) != ("t4", 3, "ohem")),
        )  # fmt: skip
