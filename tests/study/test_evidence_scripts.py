"""The evidence study's own scripts (docs/study/2026-12-06-evidence): the blind power check,
on a study output folder laid out as the catalog writes it (versioned scores per cell)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

STUDY = Path(__file__).resolve().parents[2] / "docs" / "study" / "2026-12-06-evidence"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, STUDY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_scores(root: Path, fold: str, seed: int, run: str, miou: float, version: str) -> None:
    folder = root / "FPN" / fold / f"seed{seed}" / run / "baseline" / "scores.csv" / version
    folder.mkdir(parents=True)
    rows = [
        {"stage": "baseline", "tta": tta, "miou": miou + (0.5 if not tta else 0.0),
         "boundary_iou": 0.2, "checkpoint_epoch": 180, "checkpoint_run": version,
         "arch": "FPN", "fold": fold, "seed": seed, "run": run}
        for tta in (False, True)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "scores.csv", index=False)


@pytest.fixture(params=[0.02, 0.004], ids=["spread", "tight"])
def study_output(tmp_path, request):
    """Twelve pairs whose mIoU differences (with TTA) are known; the reference written in
    reverse fold order, and an older version of one cell that must not be read."""
    rng = np.random.default_rng(0)
    differences = {}
    for k, fold in enumerate(f"t{i}" for i in range(6, 0, -1)):
        for seed in (2, 1):
            reference = 0.3 + 0.01 * k
            differences[fold, seed] = float(rng.normal(0.004, request.param))
            write_scores(
                tmp_path, fold, seed, "baseline_equal", reference, "2026-12-07T01.00.00.000Z"
            )
            write_scores(
                tmp_path, fold, seed, "efm_one_run", reference + differences[fold, seed],
                "2026-12-07T02.00.00.000Z",
            )  # fmt: skip
    write_scores(tmp_path, "t1", 1, "efm_one_run", 0.9, "2026-12-06T20.00.00.000Z")  # older
    return tmp_path, differences


def test_the_power_check_prints_the_paired_sd_and_the_verdict_and_never_a_mean(
    study_output, capsys, request
):
    root, differences = study_output
    assert script("power_check").main(root) == 0
    printed = capsys.readouterr().out
    sd = np.std(list(differences.values()), ddof=1)
    assert "12 of 12 pairs" in printed
    assert f"{sd:.4f}" in printed
    expected = "add seeds 3 and 4" if request.node.callspec.id == "spread" else "the 12 pairs stand"
    assert expected in printed
    mean = np.mean(list(differences.values()))
    assert f"{mean:.3f}" not in printed and f"{mean:.4f}" not in printed


def test_the_power_check_reads_as_it_did_once_the_seeds_it_added_are_scored(study_output, capsys):
    root, differences = study_output
    for fold in ("t1", "t2"):
        for run, miou in (("efm_one_run", 0.9), ("baseline_equal", 0.1)):
            write_scores(root, fold, 3, run, miou, "2026-12-08T00.00.00.000Z")
    assert script("power_check").main(root) == 0
    printed = capsys.readouterr().out
    assert "12 of 12 pairs" in printed
    assert f"{np.std(list(differences.values()), ddof=1):.4f}" in printed


def test_the_power_rule_waits_for_all_twelve_pairs(study_output, capsys):
    root, _ = study_output
    for version in (root / "FPN/t4/seed2/efm_one_run/baseline/scores.csv").iterdir():
        (version / "scores.csv").unlink()
    assert script("power_check").main(root) == 2
    printed = capsys.readouterr().out
    assert "11 of 12 pairs" in printed and "paired sd" not in printed


def write_history(root: Path, cell: str, rows: list[dict]) -> None:
    folder = root / "07_model_output" / "study" / cell / "history.csv"
    for version, kept in (("2026-12-06T20.00.00.000Z", rows[:1]), (rows[-1]["run_id"], rows)):
        (folder / version).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(kept).to_csv(folder / version / "history.csv", index=False)


def test_collect_copies_the_latest_reports_and_names_each_cells_processors(tmp_path):
    data, dest = tmp_path / "data", tmp_path / "dest"
    dest.mkdir()
    (data / "08_reporting" / "study").mkdir(parents=True)
    (data / "study_invocations.log").write_text(
        "2026-12-06T23:13:56Z start --tags study.run.baseline_equal\n"
        "(the invocation above ran on Intel(R) Xeon(R) Processor, 2 CPUs)\n"
        "(the invocation above was killed with its session)\n"
        "2026-12-07T02:13:11Z start on AMD EPYC 7B13 (2 CPUs): --tags study.run.efm_one_run\n"
        "2026-12-07T03:13:11Z end rc=0 wall_s=3600 --tags study.run.efm_one_run\n"
        "2026-12-07T04:00:00Z start on AMD EPYC 7B13 (2 CPUs): \n"
        "2026-12-07T04:10:00Z end (stopped by TERM) wall_s=600 \n"
    )
    for name, versions in (("per_seed.csv", ["2026-12-07T01", "2026-12-07T03"]),
                           ("tables.md", ["2026-12-07T03"])):  # fmt: skip
        for version in versions:
            folder = data / "08_reporting" / "study" / name / version
            folder.mkdir(parents=True)
            (folder / name).write_text(version)
    first, second = "2026-12-06T23.13.58.228Z", "2026-12-07T02.13.14.376Z"
    write_history(
        data, "FPN/t1/seed1/baseline_equal/baseline",
        [{"epoch": e, "seconds": 2.0, "run_id": first} for e in (1, 2)]
        + [{"epoch": 3, "seconds": 3.0, "run_id": second, "hardware": "AMD EPYC 7B13"}],
    )  # fmt: skip
    write_history(
        data, "FPN/t1/seed2/full/efm",
        [{"epoch": e, "seconds": 1.5, "run_id": second, "hardware": "NVIDIA H100 (CUDA 13.0)"}
         for e in (1, 2)],
    )  # fmt: skip

    assert script("collect").main(data, dest) == 0

    assert (dest / "per_seed.csv").read_text() == "2026-12-07T03"  # the latest version
    assert (dest / "tables.md").is_file() and not (dest / "ablation.png").exists()
    table = pd.read_csv(dest / "cells.csv")
    assert table.to_dict("records") == [
        {"arch": "FPN", "fold": "t1", "seed": 1, "run": "baseline_equal", "stage": "baseline",
         "epochs": 3, "train_s": 7.0, "invocations": 2,
         "processors": "Intel(R) Xeon(R) Processor; AMD EPYC 7B13"},
        {"arch": "FPN", "fold": "t1", "seed": 2, "run": "full", "stage": "efm",
         "epochs": 2, "train_s": 3.0, "invocations": 1,
         "processors": "NVIDIA H100 (CUDA 13.0)"},  # what the epochs recorded, not the log
    ]  # fmt: skip
    runs = pd.read_csv(dest / "invocations.csv", keep_default_na=False)
    assert runs["machine"].tolist() == ["Intel(R) Xeon(R) Processor", *["AMD EPYC 7B13"] * 2]
    assert runs["ended"].tolist() == ["no end logged", "rc=0", "stopped by TERM"]
    assert runs["wall_s"].tolist() == ["", "3600", "600"]  # whole seconds, none unknown
    assert runs["arguments"].tolist()[:2] == [
        "--tags study.run.baseline_equal",
        "--tags study.run.efm_one_run",
    ]


def evidence_per_seed(effects: dict[str, dict[str, float]], noise: float = 0.002) -> pd.DataFrame:
    """Scores of every configuration of the real evidence grid on its folds and seeds: the
    reference's plus ``effects[run][metric]`` (or ``effects["<run>.<stage>"]``) plus a little
    noise per pair."""
    from efm_seg.parameters import StudyParams
    from efm_seg.study.analysis import METRICS
    from efm_seg.study.grid import cells

    study = StudyParams.model_validate(script("answer").grid())
    rng = np.random.default_rng(3)
    rows = []
    for cell in cells(study):
        base = 0.3 + 0.02 * int(cell.fold[1]) + 0.01 * cell.seed
        change = effects.get(f"{cell.run}.{cell.stage}", effects.get(cell.run, {}))
        rows.append(
            {"arch": cell.arch, "run": cell.run, "stage": cell.stage, "fold": cell.fold,
             "seed": cell.seed, "checkpoint_epoch": 180, "checkpoint_run": "r"}
            | {m: base + change.get(m, 0.0) + (0 if cell.run == "baseline_equal"
                                               else rng.normal(0, noise)) for m in METRICS}
        )  # fmt: skip
    return pd.DataFrame(rows)


def study_answer(effects: dict[str, dict[str, float]], failing=("t3",), patch=None) -> str:
    """The answer on made-up scores; ``patch(paired)`` may change the paired table first."""
    from efm_seg.study.analysis import paired_differences, per_fold_differences

    per_seed = evidence_per_seed(effects)
    # Rows in any order: the answer reads each configuration's own stage, wherever it is.
    paired = paired_differences(per_seed, "baseline_equal", "baseline", 0.95)
    paired = paired.sample(frac=1.0, random_state=0).reset_index(drop=True)
    if patch is not None:
        patch(paired)
    per_fold = per_fold_differences(per_seed, "baseline_equal", "baseline")
    convergence = pd.DataFrame(
        {"fold": [f"t{i}" for i in range(1, 7)],
         "fold_fails": [f"t{i}" in failing for i in range(1, 7)]}
    )  # fmt: skip
    answer = script("answer")
    return answer.answer(paired, per_fold, convergence, answer.grid())


def table_row(text: str, section: str, configuration: str) -> list[str]:
    """The cells of ``configuration``'s row in the answer's table under ``section``."""
    part = text.split(section)[1].split("\n## ", maxsplit=1)[0]
    line = next(line for line in part.splitlines() if line.startswith(f"| {configuration} "))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_the_answer_finds_no_winner_when_nothing_differs():
    text = study_answer({})
    assert "**No difference** between EFM in one run and the equal-budget baseline" in text
    assert "**None does.**" in text and "becomes the default" not in text
    # A negative result says how large a gain the design would have seen.
    assert "no gain was detected" in text and "smaller gains are not ruled out" in text
    assert "on 1 of 6 folds (t3)" in text
    assert "(at most 2 such folds) is met." in text
    assert "Pairs per comparison: 12 or 24" in text
    # Holm's family is every run and stage compared on the metric: 14 in the evidence grid.
    assert "(14 on mIoU: each run and stage in `paired.csv`)" in text


def test_the_answer_lists_every_configuration_a_user_could_ship_at_its_own_stage():
    answer = script("answer")
    assert answer.configurations(answer.grid()) == {
        "efm_one_run": ("baseline", True),
        "efm_one_run_topk_all": ("baseline", True),
        "efm_one_run_no_boundary": ("baseline", True),
        "efm_one_run_error_only": ("baseline", True),
        "ohem": ("baseline", False),
        "focal": ("baseline", False),
        "lovasz": ("baseline", False),
        "full": ("finetune", True),
        "init_previous": ("finetune", True),
        "error_only": ("finetune", True),
    }
    # Each row carries the smallest difference its own pairs detect: 24 pairs or 12.
    text = study_answer({})
    for configuration in ("`ohem`", "`full` (after fine-tuning)"):
        miou = table_row(text, "## Does a configuration", configuration)[1]
        assert "; detects 0.0" in miou


def test_a_configuration_that_loses_is_no_winner():
    text = study_answer({"ohem": {"miou": -0.05}})
    assert "**None does.**" in text
    assert "**loses**" in table_row(text, "## Does a configuration", "`ohem`")[1]


def test_the_answer_says_when_the_plateau_rule_is_not_met():
    text = study_answer({}, failing=("t3", "t5", "t6"))
    assert "on 3 of 6 folds (t3, t5, t6)" in text
    assert "(at most 2 such folds) is **not met**" in text
    assert "not for converged models" in text
    assert "(at most 2 such folds) is met." in study_answer({}, failing=("t3", "t5"))


def test_the_primary_verdict_says_when_holm_does_not_keep_it():
    def unadjusted_win(paired):
        primary = (paired["run"] == "efm_one_run") & (paired["metric"] == "miou")
        paired.loc[primary, ["ci_low", "p_holm"]] = [0.001, 0.3]

    text = study_answer({}, patch=unadjusted_win)
    assert (
        "EFM in one run **beats** the equal-budget baseline on mIoU (uncorrected only: "
        "Holm's p is 0.300)." in text
    )
    assert "(uncorrected only)" in table_row(text, "## Does a configuration", "`efm_one_run`")[1]


def test_the_answer_ships_the_largest_mIoU_gain_and_says_whether_it_is_EFM():
    text = study_answer({
        "focal": {"miou": 0.02},
        "lovasz": {"miou": 0.03},
        "full.finetune": {"miou": 0.05},
        "full.efm": {"miou": 0.3},  # the EFM stage alone is not a shipped configuration
        "efm_one_run": {"miou": -0.02, "ece": -0.03, "ece_scaled": 0.0},
        "ohem": {"boundary_iou": 0.1},
    })  # fmt: skip
    assert "**`full` becomes the default** (the largest mean mIoU gain" in text
    assert "+0.05" in text and "+0.3" not in text
    assert "It uses EFM." in text
    assert "EFM in one run **scores below** the equal-budget baseline on mIoU" in text
    assert "Higher on 0 of 6 folds" in text
    row = next(line for line in text.splitlines() if line.startswith("| `efm_one_run`")
               and "**lower**" in line)  # fmt: skip
    assert row.count("**lower**") == 1  # ECE lower before scaling only
    assert "ECE: lower, gone after scaling; NLL: no gain" in row
    assert "No EFM configuration keeps a calibration gain once both sides are" in text


def test_a_calibration_gain_counts_when_it_survives_temperature_scaling():
    text = study_answer({"init_previous.finetune": {"nll": -0.2, "nll_scaled": -0.1},
                         "efm_one_run": {"ece": 0.05}})  # fmt: skip
    row = table_row(text, "## What EFM changes", "`init_previous` (after fine-tuning)")
    assert row[-1] == "ECE: no gain; NLL: lower, **survives scaling**"
    assert table_row(text, "## What EFM changes", "`efm_one_run`")[-1].startswith(
        "ECE: no gain (higher)"
    )
    assert "A calibration gain that survives temperature scaling: `init_previous` on NLL." in text

    def unadjusted(paired):
        kept = (paired["run"] == "init_previous") & (paired["metric"] == "nll_scaled")
        paired.loc[kept & (paired["stage"] == "finetune"), "p_holm"] = 0.3

    text = study_answer({"init_previous.finetune": {"nll": -0.2, "nll_scaled": -0.1}},
                        patch=unadjusted)  # fmt: skip
    row = table_row(text, "## What EFM changes", "`init_previous` (after fine-tuning)")
    assert row[-1] == "ECE: no gain; NLL: lower, **survives scaling** (uncorrected only)"
    assert "survives temperature scaling: `init_previous` on NLL (uncorrected only)." in text


def test_the_default_says_what_it_costs_on_the_other_metric_and_whether_efm_won_anything():
    text = study_answer({"focal": {"miou": 0.05, "boundary_iou": -0.05}})
    assert "**`focal` becomes the default**" in text
    assert "It scores below the reference on Boundary IoU (-0.05" in text
    assert "No EFM configuration beats the reference on mIoU or Boundary IoU." in text
    text = study_answer({"focal": {"miou": 0.05}, "error_only.finetune": {"boundary_iou": 0.05}})
    assert "EFM configurations that beat the reference too: `error_only` on Boundary IoU." in text
    assert "It scores below" not in text


def test_the_gpu_study_takes_the_default_then_the_best_means_with_at_least_one_efm_run():
    answer = script("answer")
    shipped = answer.configurations(answer.grid())
    miou = {run: -0.05 for run in shipped} | {"focal": 0.03, "lovasz": 0.02, "full": 0.01,
                                              "error_only": 0.01, "efm_one_run": 0.0}  # fmt: skip
    boundary = {"error_only": 0.02, "full": 0.01}
    rows = {
        (run, metric): pd.Series({"difference": values.get(run, 0.0)})
        for run in shipped
        for metric, values in (("miou", miou), ("boundary_iou", boundary))
    }
    # The two best are not EFM: the second place goes to the best EFM configuration, by mIoU
    # and then Boundary IoU (error_only ties full on mIoU).
    assert answer.gpu_variants(rows, shipped, None) == ["focal", "error_only"]
    # The default comes first, whatever its mean; then the best mean, unless neither is EFM.
    assert answer.gpu_variants(rows, shipped, "lovasz") == ["lovasz", "error_only"]
    better = rows | {("error_only", "miou"): pd.Series({"difference": 0.05})}
    assert answer.gpu_variants(better, shipped, "lovasz") == ["lovasz", "error_only"]
    assert answer.gpu_variants(better, shipped, None) == ["error_only", "focal"]
    assert answer.gpu_variants(rows, shipped, "full") == ["full", "focal"]
    text = study_answer({"focal": {"miou": 0.03}})
    part = text.split("## The GPU study's variants")[1].split("\n## ", maxsplit=1)[0]
    assert part.startswith(" (issue 23, item 6)\n\n`focal` and `")
    assert "```yaml\nfocal:\n  description: focal loss" in part


def test_the_answer_falls_back_to_boundary_iou_and_flags_an_uncorrected_win():
    text = study_answer({"ohem": {"boundary_iou": 0.1}})
    assert "**`ohem` becomes the default** (the largest mean Boundary IoU gain" in text
    assert "It does not use EFM." in text
    from efm_seg.study.analysis import paired_differences, per_fold_differences

    per_seed = evidence_per_seed({"lovasz": {"miou": 0.01}}, noise=0.015)
    paired = paired_differences(per_seed, "baseline_equal", "baseline", 0.95)
    lovasz = (paired["run"] == "lovasz") & (paired["metric"] == "miou")
    paired.loc[lovasz, ["ci_low", "p_holm"]] = [0.001, 0.2]  # a win Holm does not keep
    answer = script("answer")
    text = answer.answer(
        paired, per_fold_differences(per_seed, "baseline_equal", "baseline"),
        pd.DataFrame({"fold": ["t1"], "fold_fails": [False]}), answer.grid(),
    )  # fmt: skip
    assert "**`lovasz` becomes the default**" in text
    assert "it holds only uncorrected, Holm's p being 0.200" in text


def mixed_processors(per_seed: pd.DataFrame) -> list[str]:
    """Seeds 1 and 2 of the reference and ``efm_one_run``, and the reference of fold t1, on a
    Xeon; the rest on an EPYC."""
    xeon = (per_seed["seed"] <= 2) & per_seed["run"].isin(["baseline_equal", "efm_one_run"])
    xeon |= (per_seed["run"] == "baseline_equal") & (per_seed["fold"] == "t1")
    return ["Intel Xeon" if x else "AMD EPYC" for x in xeon]


def processor_table(effects: dict, shift_mixed: float = 0.0, processors=mixed_processors,
                    folder: Path | None = None) -> tuple[str, dict]:  # fmt: skip
    """The answer on made-up scores whose cells trained on ``processors(per_seed)``, with
    ``efm_one_run``'s fold t1 seeds 3 and 4 (mixed pairs, by default) moved by
    ``shift_mixed``; and the processor check's table, by configuration. With ``folder``, by
    way of the CSV files ``answer.py`` reads there."""
    from efm_seg.study.analysis import paired_differences, per_fold_differences

    per_seed = evidence_per_seed(effects, noise=0.0)
    if folder is not None:  # a cell scored before calibration was measured: no ECE
        per_seed.loc[(per_seed["run"] == "lovasz") & (per_seed["fold"] == "t1"), "ece"] = np.nan
    cells = per_seed[["arch", "fold", "seed", "run", "stage"]].assign(
        processors=processors(per_seed)
    )
    mixed = (per_seed["run"] == "efm_one_run") & (per_seed["fold"] == "t1")
    per_seed.loc[mixed & (per_seed["seed"] > 2), "miou"] += shift_mixed
    cells = cells.sample(frac=1.0, random_state=1)  # found by cell, not by row
    answer = script("answer")
    reports = {
        "paired": paired_differences(per_seed, "baseline_equal", "baseline", 0.95),
        "per_fold": per_fold_differences(per_seed, "baseline_equal", "baseline"),
        "convergence": pd.DataFrame({"fold": ["t1"], "fold_fails": [False]}),
        "per_seed": per_seed,
        "cells": cells,
    }
    if folder is None:
        text = answer.answer(
            *(reports[name] for name in ("paired", "per_fold", "convergence")), answer.grid(),
            reports["per_seed"], reports["cells"],
        )  # fmt: skip
    else:
        for name, table in reports.items():
            table.to_csv(folder / f"{name}.csv", index=False)
        assert answer.main(folder) == 0
        text = (folder / "answer.md").read_text()
    table = {
        cells[0]: cells[1:]
        for line in text.split("## Processors")[1].splitlines()
        if line.startswith("| `") and (cells := [c.strip() for c in line.strip("|").split("|")])
    }
    return text, table


def test_the_answer_checks_the_primary_comparison_on_pairs_trained_on_one_processor(tmp_path):
    # The two pairs that mix processors say the opposite of the other 22, and reverse the
    # conclusion: read back from the CSV files, as main() reads them.
    text, table = processor_table(
        {"efm_one_run": {"miou": 0.01}}, shift_mixed=-0.2, folder=tmp_path
    )
    assert table["`efm_one_run`"] == [
        "22/24", "mIoU +0.0100 [+0.0100, +0.0100], 22/22 pairs",
        "mIoU: **no** (all pairs: no difference; one processor: above)",
    ]  # fmt: skip
    assert "the conclusion changes for `efm_one_run` on mIoU" in text
    # Seeds 1-2 against a Xeon reference, and t1's seeds 3-4 too: the other ten pairs match.
    assert table["`ohem`"] == ["10/24", "", ""]
    assert table["`full`"] == ["0/12", "", ""]
    _, table = processor_table({"efm_one_run": {"miou": 0.01}})
    assert table["`efm_one_run`"][2] == "mIoU: yes (above)"
    from efm_seg.study.analysis import paired_differences, per_fold_differences

    per_seed = evidence_per_seed({})
    answer = script("answer")
    assert "## Processors" not in answer.answer(
        paired_differences(per_seed, "baseline_equal", "baseline", 0.95),
        per_fold_differences(per_seed, "baseline_equal", "baseline"),
        pd.DataFrame({"fold": ["t1"], "fold_fails": [False]}), answer.grid(),
    )  # fmt: skip


def test_the_processor_check_says_when_no_pair_trained_on_one_processor():
    def reference_elsewhere(per_seed):
        return ["Intel Xeon" if r == "baseline_equal" else "AMD EPYC" for r in per_seed["run"]]

    text, table = processor_table({}, processors=reference_elsewhere)
    assert table["`efm_one_run`"] == ["0/24", "mIoU: 0 pair(s), no interval", "mIoU: cannot tell"]
    assert "It could not be checked: fewer than two pairs trained on one processor." in text


def test_a_pair_is_on_one_processor_only_with_every_cell_its_model_comes_from():
    unknown = {"t31fullefm", "t51baseline_equalbaseline", "t51ohembaseline"}

    def one_baseline_elsewhere(per_seed):
        cell = per_seed["fold"] + per_seed["seed"].astype(str) + per_seed["run"] + per_seed["stage"]
        return [
            "Intel Xeon" if c == "t21baselinebaseline"
            else "not recorded" if c in unknown
            else "AMD EPYC; Intel Xeon" if c == "t41focalbaseline"
            else "AMD EPYC"
            for c in cell
        ]  # fmt: skip

    _, table = processor_table({}, processors=one_baseline_elsewhere)
    # Fold t5 seed 1's reference is not recorded: no pair of that fold and seed counts.
    # init_previous's EFM stage starts from the seed's baseline; full's and error_only's do not.
    assert table["`init_previous`"][0] == "10/12"
    assert table["`error_only`"][0] == "11/12"
    # Epochs no record names are not known to be on one processor, even on both sides (t5
    # seed 1's OHEM); a cell on two processors is not on one.
    assert table["`full`"][0] == "10/12"
    assert table["`ohem`"][0] == "23/24"
    assert table["`focal`"][0] == "22/24"


def test_the_processor_check_takes_the_default_on_the_metric_it_was_chosen_on():
    text, table = processor_table({"ohem": {"boundary_iou": 0.1}})
    assert "**`ohem` becomes the default** (the largest mean Boundary IoU gain" in text
    assert table["`ohem`"] == [
        "10/24", "Boundary IoU +0.1000 [+0.1000, +0.1000], 10/10 pairs",
        "Boundary IoU: yes (above)",
    ]  # fmt: skip
    assert table["`efm_one_run`"][1].startswith("mIoU +0.0000")
    assert table["`focal`"] == ["10/24", "", ""]


def test_processor_noise_compares_each_run_on_two_processors_with_its_seeds(tmp_path, capsys):
    rows = {"epyc": [0.30, 0.32, 0.40, 0.44], "xeon": [0.31, 0.30, 0.40, 0.46]}
    for name, file in script("processor_noise").RUNS.items():
        pd.DataFrame(
            {"fold": ["t2", "t2", "t1", "t1"], "seed": [2, 1, 1, 2], "val_iou_last": rows[name]}
        ).to_csv(tmp_path / file, index=False)
    assert script("processor_noise").main(tmp_path) == 0
    table = pd.read_csv(tmp_path / "processor_noise.csv").set_index(["fold", "seed"])
    assert table.loc[("t2", 2), "xeon_minus_epyc"] == pytest.approx(0.01)
    assert table.loc[("t1", 2), "xeon_minus_epyc"] == pytest.approx(0.02)
    out = capsys.readouterr().out
    assert "4 runs on both processors" in out and "mean +0.0025" in out
    # seed 2 − seed 1: EPYC -0.02 and 0.04 (sd 0.0424), Xeon 0.01 and 0.06 (sd 0.0354)
    assert "sd 0.0424 (EPYC), 0.0354 (Xeon)" in out


def test_the_answer_needs_the_complete_grid(tmp_path, capsys):
    from efm_seg.study.analysis import paired_differences, per_fold_differences

    answer = script("answer")

    def answer_on(per_seed: pd.DataFrame) -> str:
        return answer.answer(
            paired_differences(per_seed, "baseline_equal", "baseline", 0.95),
            per_fold_differences(per_seed, "baseline_equal", "baseline"),
            pd.DataFrame({"fold": ["t1"], "fold_fails": [False]}), answer.grid(),
        )  # fmt: skip

    assert answer.main(tmp_path) == 1 and "run collect.py" in capsys.readouterr().out
    per_seed = evidence_per_seed({})
    per_seed = per_seed[per_seed["run"] != "lovasz"]
    with pytest.raises(ValueError, match="no paired mIoU difference for lovasz"):
        answer_on(per_seed)
    # A configuration short of one fold and seed: reports copied from an unfinished grid.
    per_seed = evidence_per_seed({})
    gone = (per_seed["run"] == "lovasz") & (per_seed["fold"] == "t2") & (per_seed["seed"] == 3)
    per_seed = per_seed[~gone]
    with pytest.raises(ValueError, match=r"pairs missing for lovasz.baseline \(23 of 24\)"):
        answer_on(per_seed)
    # Every run and stage counts (Holm's family), not only the configurations a user ships.
    per_seed = evidence_per_seed({})
    gone = (per_seed["run"] == "full") & (per_seed["stage"] == "efm") & (per_seed["fold"] == "t3")
    per_seed = per_seed[~(gone & (per_seed["seed"] == 1))]
    with pytest.raises(ValueError, match=r"pairs missing for full.efm \(11 of 12\)"):
        answer_on(per_seed)


def test_the_snapshot_keeps_the_latest_version_of_each_finished_cell(tmp_path, capsys):
    data, dest = tmp_path / "data", tmp_path / "dest"
    study = data / "07_model_output" / "study"
    finished = study / "FPN/t1/seed3/ohem/baseline"
    for version, text in (("2026-12-07T01", "old"), ("2026-12-07T05", "new")):
        for name in ("scores.csv", "history.csv"):
            (finished / name / version).mkdir(parents=True)
            (finished / name / version / name).write_text(f"{text} {name}\n")
    under_way = study / "FPN/t2/seed1/focal/baseline/scores.csv/2026-12-07T06"  # no history yet
    under_way.mkdir(parents=True)
    (under_way / "scores.csv").write_text("x\n")
    (data / "study_invocations.log").write_text("2026-12-07T05:27:23Z start\n")
    stale = dest / "cells/FPN/t1/seed3/ohem/baseline/scores.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("from before the cell was trained again\n")

    assert script("snapshot").main(data, dest) == 0

    kept = dest / "cells/FPN/t1/seed3/ohem/baseline"
    assert (kept / "scores.csv").read_text() == "new scores.csv\n"
    assert (kept / "history.csv").read_text() == "new history.csv\n"
    assert not (dest / "cells/FPN/t2").exists()
    assert (dest / "cells/study_invocations.log").read_text().endswith("start\n")
    assert capsys.readouterr().out.startswith("kept 1 finished cells")


RESTORED_GRID = {
    "architectures": ["FPN"],
    "seeds": [1],
    "folds": {"a": {"x": "test", "y": "val"}, "b": {"y": "test", "x": "val"}},
    "epochs": {"baseline": 1, "efm": 1, "finetune": 1},
    "variants": {
        "warm": {"efm": {"init_from": "previous"}},
        "fresh": {},
        "focal": {"single_run": True, "training": {"criterion": {"name": "focal"}}},
    },
}


def commit_cell(cells_dir: Path, cell, init_stage: str) -> None:
    folder = cells_dir / cell.arch / cell.fold / f"seed{cell.seed}" / cell.run / cell.stage
    folder.mkdir(parents=True)
    run = f"2026-12-07T0{cell.seed}.{len(cell.name) % 60:02d}.00.000Z"
    pd.DataFrame(
        [{"arch": cell.arch, "fold": cell.fold, "seed": cell.seed, "run": cell.run,
          "stage": cell.stage, "tta": tta, "miou": 0.3, "checkpoint_run": run,
          "init_stage": init_stage, "init_run": ""} for tta in (False, True)]
    ).to_csv(folder / "scores.csv", index=False)  # fmt: skip
    pd.DataFrame({"epoch": [1], "val_iou": [0.3], "run_id": [run]}).to_csv(
        folder / "history.csv", index=False
    )


def test_restore_puts_the_committed_cells_back_and_trains_only_what_they_cannot_replace(
    tmp_path, capsys
):
    from efm_seg.parameters import StudyParams
    from efm_seg.pipelines.study.pipeline import create_pipeline
    from efm_seg.study.grid import Cell, cells

    study = StudyParams.model_validate(RESTORED_GRID)
    source, data = tmp_path / "cells", tmp_path / "data"
    missing = {  # under way when the machine was lost
        Cell("FPN", "a", 1, "warm", "finetune"),
        Cell("FPN", "b", 1, "fresh", "finetune"),
    }
    for cell in cells(study):
        if cell not in missing:
            started = cell.stage == "finetune" or (cell.run, cell.stage) == ("warm", "efm")
            commit_cell(source, cell, cell.parent.stage if started else "")
    restore = script("restore")

    (source / "study_invocations.log").write_text("the lost machine's invocations\n")
    assert restore.main(data, study, source) == 0

    assert "restored 12 cells; 8 of 14 to train, 6 of them restored ones set aside" in (
        capsys.readouterr().out
    )
    # The log goes on from the committed one, so collect.py lists every machine's invocations.
    assert (data / "study_invocations.log").read_text() == "the lost machine's invocations\n"
    kept = data / "07_model_output/study/FPN/b/seed1/focal/baseline/scores.csv"
    assert len(list(kept.iterdir())) == 1  # one version, named by its checkpoint's run
    nodes = (data / "restore_nodes.txt").read_text().strip().split(",")

    def trained(fold: str, *runs: str) -> list[str]:
        return [
            f"study.FPN.{fold}.seed1.{run}.{node}" for run in runs for node in ("train", "evaluate")
        ]

    # A missing fine-tuning needs its EFM stage's checkpoint, which needs the seed's baseline (a
    # restored cell has none). In fold a, fresh.efm did not start from the baseline: it is kept.
    # In fold b, warm.efm did, so it trains again, and so does the fine-tuning started from it.
    assert nodes == [
        "study.folds.split_a", "study.folds.split_b",
        *trained("a", "baseline.baseline", "warm.efm", "warm.finetune"),
        *trained("b", "baseline.baseline", "warm.efm", "warm.finetune", "fresh.efm",
                 "fresh.finetune"),
        "study.check_convergence", "study.summarize",
    ]  # fmt: skip
    assert set(nodes) <= {node.name for node in create_pipeline(RESTORED_GRID).nodes}

    # The restored cells to train again are set aside, so that Kedro scores them again (with
    # --only-missing-outputs a scoring node runs only where the scores are missing).
    aside = data / "07_model_output/study/FPN/b/seed1/warm/efm"
    assert not (aside / "scores.csv").exists() and not (aside / "history.csv").exists()
    assert (data / "restored_set_aside/FPN/b/seed1/warm/efm/scores.csv").is_dir()
    assert (data / "07_model_output/study/FPN/a/seed1/fresh/efm/scores.csv").is_dir()  # kept

    # Again, once fold a's baseline and EFM stage have trained and been scored on this machine:
    # its fine-tuning alone is left there, and nothing set aside comes back.
    for cell, init in ((Cell("FPN", "a", 1, "baseline", "baseline"), ""),
                       (Cell("FPN", "a", 1, "warm", "efm"), "baseline")):  # fmt: skip
        save_version(data, cell, "best_checkpoint.pt")
        save_version(data, cell, "scores.csv", init)
    (data / "study_invocations.log").write_text("this machine's log\n")
    assert restore.main(data, study, source) == 0
    assert (data / "study_invocations.log").read_text() == "this machine's log\n"
    assert "restored 0 cells; 6 of 14 to train, 0 of them" in capsys.readouterr().out
    nodes = (data / "restore_nodes.txt").read_text().strip().split(",")
    assert [n for n in nodes if ".a.seed1." in n] == trained("a", "warm.finetune")
    assert not (aside / "scores.csv").exists()


def save_version(data: Path, cell, name: str, init_stage: str = "") -> None:
    """A version of one of a cell's datasets in the data root: ``scores.csv`` (with the stage
    its checkpoint started from) or ``best_checkpoint.pt``."""
    layer = "06_models" if name.endswith(".pt") else "07_model_output"
    folder = data / layer / "study" / cell.arch / cell.fold / f"seed{cell.seed}" / cell.run
    version = folder / cell.stage / name / "2026-12-07T01.00.00.000Z"
    version.mkdir(parents=True)
    pd.DataFrame([{"miou": 0.3, "init_stage": init_stage}]).to_csv(version / name, index=False)


def test_next_cells_lists_what_a_run_still_has_to_train_in_grid_order(tmp_path, capsys):
    from efm_seg.parameters import StudyParams
    from efm_seg.study.grid import Cell

    study = StudyParams.model_validate(RESTORED_GRID)
    # Fold a trained here: its baseline and EFM stage are scored and have checkpoints.
    for stage, run, init in (("baseline", "baseline", ""), ("efm", "warm", "baseline")):
        save_version(tmp_path, Cell("FPN", "a", 1, run, stage), "scores.csv", init)
        save_version(tmp_path, Cell("FPN", "a", 1, run, stage), "best_checkpoint.pt")
    # Fold b was restored: scores without checkpoints, and its fine-tuning is missing, so it
    # needs its EFM stage again, which needs the seed's baseline.
    save_version(tmp_path, Cell("FPN", "b", 1, "baseline", "baseline"), "scores.csv")
    save_version(tmp_path, Cell("FPN", "b", 1, "warm", "efm"), "scores.csv", "baseline")
    # Its fresh EFM stage did not start from the baseline: kept, with the fine-tuning from it.
    save_version(tmp_path, Cell("FPN", "b", 1, "fresh", "efm"), "scores.csv")
    save_version(tmp_path, Cell("FPN", "b", 1, "fresh", "finetune"), "scores.csv", "efm")

    assert script("next_cells").main(["warm", "baseline"], tmp_path, study) == 0
    assert capsys.readouterr().out.split() == [
        "study.FPN.a.seed1.warm.finetune",
        "study.FPN.b.seed1.baseline.baseline", "study.FPN.b.seed1.warm.efm",
        "study.FPN.b.seed1.warm.finetune",
    ]  # fmt: skip
    assert script("next_cells").main(["fresh"], tmp_path, study) == 0
    assert capsys.readouterr().out.split() == [
        "study.FPN.a.seed1.fresh.efm", "study.FPN.a.seed1.fresh.finetune",
    ]  # fmt: skip

    save_version(tmp_path, Cell("FPN", "b", 1, "focal", "baseline"), "best_checkpoint.pt")
    assert script("next_cells").main(["--trained"], tmp_path, study) == 0
    assert capsys.readouterr().out.split() == ["study.FPN.b.seed1.focal.baseline"]
    assert script("next_cells").main(["wram"], tmp_path, study) == 2
    assert "not a run of the evidence study: wram" in capsys.readouterr().err
