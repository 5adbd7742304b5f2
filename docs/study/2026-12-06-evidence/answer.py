"""The evidence study's answer, by the rules fixed before any test score was read (README "What
follows from the answer").

Reads the study's paired differences, per-fold differences and convergence verdicts (the files
``collect.py`` copies here from ``08_reporting/study``) and the grid (``conf/evidence``), and
writes ``answer.md``:

- **the primary comparison**: EFM in one run (``efm_one_run``) against the equal-budget
  baseline on mIoU: the mean paired difference, its interval, how many pairs favour EFM, its
  p-value before and after Holm's adjustment, and the smallest difference the design detects;
- **item 5's rule**: a configuration (a one-run variant, or a three-stage variant after
  fine-tuning; the paper-schedule baseline and the EFM stage alone are not configurations a user
  would ship) *beats* the reference when its paired interval on mIoU or on Boundary IoU lies
  above 0. The default becomes the one with the largest mean mIoU difference among those that
  beat it on mIoU, or, if none does, on Boundary IoU among those that beat it there. A win whose
  Holm-adjusted p is 0.05 or more is said to hold only uncorrected. If none beats it, the answer
  says that at this scale EFM does not improve accuracy;
- **what EFM does change**: each EFM configuration's calibration (ECE before and after
  temperature scaling of both sides; a gain counts only if it survives the scaling);
- **limits**: the folds whose reference was still improving, the pairs, the detectable
  difference;
- **processors** (a check beside the answer, not part of it): the grid trained on two
  processors, and a seeded run trained again on the other differs by about half to two thirds
  as much as two seeds do (``processor_noise.py``). Per configuration, how many of its pairs
  trained both cells on the same processor; for the primary comparison (mIoU) and the new
  default (if any, on the metric it was chosen on), the paired difference again on those pairs
  alone. Needs ``per_seed.csv`` and ``cells.csv``.

It prints nothing of the scores; run it once the grid is complete and ``collect.py`` has run.

    .venv/bin/python docs/study/2026-12-06-evidence/answer.py [FOLDER]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from efm_seg.framework.config_loader import ProjectConfigLoader
from efm_seg.reporting.report import to_markdown
from efm_seg.study.analysis import pair_differences, t_interval

HERE = Path(__file__).resolve().parent
CONF = HERE.parents[2] / "conf"
PRIMARY = "efm_one_run"
REFERENCE = "baseline_equal"
ACCURACY = {"miou": "mIoU", "boundary_iou": "Boundary IoU"}
CALIBRATION = {"ece": "ECE", "ece_scaled": "ECE (T-scaled)"}
HOLM_LEVEL = 0.05


def grid(conf: Path = CONF) -> dict:
    """The evidence environment's ``study`` block."""
    loader = ProjectConfigLoader(conf_source=str(conf), base_env="base", env="evidence")
    return loader["parameters"]["study"]


def configurations(study: dict) -> dict[str, tuple[str, bool]]:
    """Each configuration a user could ship: ``{run: (stage it is scored at, uses EFM)}``."""
    shipped = {}
    for name, variant in study["variants"].items():
        one_run = bool(variant.get("single_run"))
        efm = not one_run or bool(variant.get("training", {}).get("efm", {}).get("enabled"))
        shipped[name] = ("baseline" if one_run else "finetune", efm)
    return shipped


def beats(row: pd.Series) -> bool:
    """The paired interval lies above 0 (accuracy: higher is better)."""
    return bool(row["ci_low"] > 0)


def loses(row: pd.Series) -> bool:
    return bool(row["ci_high"] < 0)


def interval(row: pd.Series) -> str:
    return (
        f"{row['difference']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}], "
        f"{int(row['better'])}/{int(row['seeds'])} pairs"
    )


def p_text(value: float) -> str:
    return "n/a" if math.isnan(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def accuracy_text(row: pd.Series) -> str:
    mark = " **beats**" if beats(row) else " **loses**" if loses(row) else ""
    held = "" if not beats(row) or row["p_holm"] < HOLM_LEVEL else " (uncorrected only)"
    return f"{interval(row)}{mark}{held}; p (Holm) {p_text(row['p_holm'])}"


def calibration_text(row: pd.Series) -> str:
    # Lower is better: a gain is an interval below 0.
    mark = " **lower**" if loses(row) else " **higher**" if beats(row) else ""
    return f"{row['difference']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]{mark}"


def metric_cells(rows: dict, run: str, metrics: dict[str, str], text) -> dict[str, str]:
    """One table cell per metric of ``run``: ``text(row)``, or n/a where it was not compared."""
    return {
        label: "n/a" if (run, metric) not in rows else text(rows[run, metric])
        for metric, label in metrics.items()
    }


def same_processor(per_seed: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Every pair's difference from the reference on each accuracy metric (by fold and seed),
    and whether both of its cells trained on the same processor(s) (``cells.csv``'s
    ``processors``)."""
    processors = cells.set_index(["arch", "fold", "seed", "run", "stage"])["processors"]
    pairs = pair_differences(per_seed, REFERENCE, "baseline")
    pairs = pairs[pairs["metric"].isin(list(ACCURACY))].reset_index(drop=True)

    def processor(row: pd.Series, run: str, stage: str) -> str:
        return processors.get((row["arch"], row["fold"], int(row["seed"]), run, stage), "")

    pairs["same"] = [
        bool(mine) and mine == processor(row, REFERENCE, "baseline")
        for _, row in pairs.iterrows()
        for mine in [processor(row, row["run"], row["stage"])]
    ]
    return pairs


def processor_lines(pairs: pd.DataFrame, shipped: dict, checked: dict[str, list[str]],
                    confidence: float) -> list[str]:  # fmt: skip
    """The processor check (see the module's docstring), as Markdown lines; ``checked``: the
    metrics to compute again for each run checked (the primary comparison's, the default's)."""
    table = []
    for run, (stage, _) in shipped.items():
        mine = pairs[(pairs["run"] == run) & (pairs["stage"] == stage)]
        mine_miou = mine[mine["metric"] == "miou"]
        row = {
            "configuration": f"`{run}`",
            "pairs on one processor": f"{int(mine_miou['same'].sum())}/{len(mine_miou)}",
        }
        texts = []
        for metric in checked.get(run, []):
            same = mine.loc[mine["same"] & (mine["metric"] == metric), "difference"]
            if len(same) >= 2:
                mean, low, high = t_interval(same, confidence)
                favour = int((same > 0).sum())
                texts.append(
                    f"{ACCURACY[metric]} {mean:+.4f} [{low:+.4f}, {high:+.4f}], "
                    f"{favour}/{len(same)} pairs"
                )
            else:
                texts.append(f"{ACCURACY[metric]}: {len(same)} pair(s), no interval")
        row["difference on those pairs"] = "; ".join(texts)
        table.append(row)
    return [
        "## Processors (a check beside the answer, not part of it)",
        "",
        "The grid trained on an Intel Xeon and an AMD EPYC. The same seeded run trained on "
        "both differs by about half to two thirds as much as two seeds do, with no offset "
        "between the processors (validation IoU, `processor_noise.csv`): a pair whose two "
        "cells trained on different processors is noisier, not biased. For the primary "
        "comparison and the new default, the difference again on the pairs trained on one "
        "processor:",
        "",
        to_markdown(pd.DataFrame(table)),
        "",
    ]


def answer(paired: pd.DataFrame, per_fold: pd.DataFrame, convergence: pd.DataFrame,
           study: dict, per_seed: pd.DataFrame | None = None,
           cell_table: pd.DataFrame | None = None) -> str:  # fmt: skip
    """The answer as Markdown (see the module's docstring for the rules); with ``per_seed``
    and ``cell_table`` (``cells.csv``), the processor check too."""
    shipped = configurations(study)
    rows = {
        (run, metric): row
        for (run, stage, metric), row in paired.set_index(["run", "stage", "metric"]).iterrows()
        if run in shipped and stage == shipped[run][0]
    }
    missing = [run for run in shipped if (run, "miou") not in rows]
    if missing:
        raise ValueError(
            f"no paired mIoU difference for {', '.join(missing)}: is the grid complete?"
        )
    lines = ["# The answer", ""]
    lines += [
        "Computed by [`answer.py`](answer.py) from `paired.csv`, `per_fold.csv` and "
        "`convergence.csv`, by the rules the README fixed before any test score was read.",
        "",
    ]

    primary = rows[PRIMARY, "miou"]
    folds = per_fold[(per_fold["run"] == PRIMARY) & (per_fold["metric"] == "miou")]
    positive = int((folds["difference"] > 0).sum())
    verdict = (
        "EFM in one run **beats** the equal-budget baseline on mIoU"
        if beats(primary)
        else "EFM in one run **scores below** the equal-budget baseline on mIoU"
        if loses(primary)
        else "**No difference** between EFM in one run and the equal-budget baseline on mIoU "
        f"is detected (a true difference of {primary['detectable']:.3f} or more would be "
        "detected with 80 % power)"
    )
    lines += [
        "## The primary comparison",
        "",
        f"`{PRIMARY}` − `{REFERENCE}`, mIoU: {interval(primary)} favour EFM; "
        f"p = {p_text(primary['p'])}, p (Holm) = {p_text(primary['p_holm'])}; "
        f"paired sd {primary['sd']:.4f}, detectable {primary['detectable']:.4f}. "
        f"Higher on {positive} of {len(folds)} folds (mean over each fold's seeds).",
        "",
        verdict + ".",
        "",
    ]

    table = []
    winners: dict[str, list[tuple[float, str]]] = {metric: [] for metric in ACCURACY}
    for run, (stage, efm) in shipped.items():
        cells = metric_cells(rows, run, ACCURACY, accuracy_text)
        for metric in ACCURACY:
            if (run, metric) in rows and beats(rows[run, metric]):
                winners[metric].append((float(rows[run, metric]["difference"]), run))
        name = f"`{run}`" + (" (after fine-tuning)" if stage == "finetune" else "")
        table.append({"configuration": name, "EFM": "yes" if efm else "no", **cells})
    lines += [
        "## Does a configuration beat the equal-budget baseline? (issue 23, item 5)",
        "",
        to_markdown(pd.DataFrame(table)),
        "",
    ]
    chosen = next(
        ((max(winners[m])[1], m) for m in ACCURACY if winners[m]), None
    )  # mIoU first, then Boundary IoU
    if chosen is None:
        lines += [
            "**None does.** At this scale (Dubai at 128², FPN-R18 from random weights, 180 "
            "epochs) EFM does not improve accuracy over one uninterrupted run of the same "
            "length, and neither does any other configuration tried. The shipped defaults stay; "
            "the README and the report say so.",
            "",
        ]
    else:
        run, metric = chosen
        row = rows[run, metric]
        held = row["p_holm"] < HOLM_LEVEL
        lines += [
            f"**`{run}` becomes the default** (the largest mean {ACCURACY[metric]} gain among "
            f"the configurations that beat the reference on it: {interval(row)}"
            + ("" if held else "; it holds only uncorrected, Holm's p being "
               f"{p_text(row['p_holm'])}")
            + "). "
            + ("It uses EFM." if shipped[run][1] else "It does not use EFM."),
            "",
        ]  # fmt: skip

    calibration = []
    for run, (stage, efm) in shipped.items():
        if not efm:
            continue
        cells = metric_cells(rows, run, CALIBRATION, calibration_text)
        name = f"`{run}`" + (" (after fine-tuning)" if stage == "finetune" else "")
        calibration.append({"configuration": name, **cells})
    lines += [
        "## What EFM changes: calibration",
        "",
        "Differences in ECE (lower is better), before and after temperature scaling of both "
        "sides; a calibration gain counts only if it survives the scaling.",
        "",
        to_markdown(pd.DataFrame(calibration)),
        "",
    ]

    fails = convergence.drop_duplicates("fold")
    failing = list(fails.loc[fails["fold_fails"].astype(bool), "fold"])
    pairs = sorted({int(row["seeds"]) for row in rows.values()})
    lines += [
        "## Limits",
        "",
        f"- The reference was still improving on {len(failing)} of {len(fails)} folds"
        + (f" ({', '.join(failing)})" if failing else "")
        + " when it stopped (its validation IoU over the last 20 % of epochs, mean over its "
        "seeds): the answer holds for this length.",
        f"- Pairs per comparison: {' or '.join(map(str, pairs))}. The primary comparison "
        f"detects {primary['detectable']:.4f} mIoU at 80 % power; the issue's target was 0.01.",
        "",
    ]
    if per_seed is not None and cell_table is not None:
        checked = {PRIMARY: ["miou"]}
        if chosen:  # the default, on the metric it was chosen on
            checked[chosen[0]] = list(dict.fromkeys([*checked.get(chosen[0], []), chosen[1]]))
        pairs = same_processor(per_seed, cell_table)
        lines += processor_lines(pairs, shipped, checked, float(primary["confidence"]))
    return "\n".join(lines)


def main(folder: Path) -> int:
    names = ("paired", "per_fold", "convergence", "per_seed", "cells")
    reports = {name: folder / f"{name}.csv" for name in names}
    absent = [str(path) for path in reports.values() if not path.is_file()]
    if absent:
        print(f"missing {', '.join(absent)}: run collect.py once the grid is complete")
        return 1
    paired, per_fold, convergence, per_seed, cells = (
        pd.read_csv(path) for path in reports.values()
    )
    text = answer(paired, per_fold, convergence, grid(), per_seed, cells)
    (folder / "answer.md").write_text(text + "\n")
    print(f"wrote {folder / 'answer.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
