"""The evidence study's answer, by the rules fixed before any test score was read (README "What
follows from the answer").

Reads the study's paired differences, per-fold differences, per-seed scores and convergence
verdicts (the files ``collect.py`` copies here from ``08_reporting/study``), ``cells.csv``
(``collect.py``'s) and the grid (``conf/evidence``), and writes ``answer.md``:

- **the primary comparison**: EFM in one run (``efm_one_run``) against the equal-budget
  baseline on mIoU: the mean paired difference, its interval, how many pairs favour EFM, its
  p-value before and after Holm's adjustment, and the smallest difference the design detects;
- **item 5's rule**: a configuration (a one-run variant, or a three-stage variant after
  fine-tuning; the paper-schedule baseline and the EFM stage alone are not configurations a user
  would ship) *beats* the reference when its paired interval on mIoU or on Boundary IoU lies
  above 0. The default becomes the one with the largest mean mIoU difference among those that
  beat it on mIoU, or, if none does, on Boundary IoU among those that beat it there. A result
  whose Holm-adjusted p is 0.05 or more is said to hold only uncorrected (Holm's family: every
  comparison with the reference on that metric in ``paired.csv``, each run and stage). If none
  beats it, the answer says that at this scale EFM does not improve accuracy, and how large a
  gain the design would have detected;
- **what EFM does change**: each EFM configuration's calibration (ECE and NLL before and after
  temperature scaling of both sides; a gain counts only if it survives the scaling);
- **limits**: whether the reference met the plateau rule, the folds where it was still
  improving, the pairs, the detectable difference;
- **the GPU study's variants** (issue 23, item 6: the two best): the new default if there is
  one, then the configurations by their mean mIoU difference from the reference (over all their
  pairs, whether or not they beat it), ties by Boundary IoU; if neither of the two uses EFM, the
  second is the best EFM configuration, so that the paper-scale run still tests the method. It
  prints their ``conf/evidence`` definitions for ``conf/gpu_study``;
- **processors** (a check beside the answer, not part of it): the grid trained on two
  processors, and a seeded run trained again on the other differs by about half to two thirds
  as much as two seeds do (``processor_noise.py``). Per configuration, how many of its pairs
  trained on one processor alone (both sides, with every cell a three-stage configuration
  starts from); for the primary comparison (mIoU) and the new default (if any, on the metric it
  was chosen on), the paired difference again on those pairs, and whether its conclusion
  (above, below, or no difference) is the same.

It refuses an incomplete grid: every run and stage (Holm's family) must be compared on every
fold and seed it and the reference both train. It prints nothing of the scores; run it once the
grid is complete and ``collect.py`` has run.

    .venv/bin/python docs/study/2026-12-06-evidence/answer.py [FOLDER]
"""

from __future__ import annotations

import math
import sys
from dataclasses import astuple
from pathlib import Path

import pandas as pd
import yaml

from efm_seg.framework.config_loader import ProjectConfigLoader
from efm_seg.parameters import StudyParams
from efm_seg.reporting.report import to_markdown
from efm_seg.study.analysis import pair_differences, t_interval
from efm_seg.study.grid import Cell, cell_recipe, study_runs

HERE = Path(__file__).resolve().parent
CONF = HERE.parents[2] / "conf"
PRIMARY = "efm_one_run"
REFERENCE = "baseline_equal"
BASELINE = "baseline"  # the paper-schedule baseline, whose checkpoint an EFM stage may start from
ACCURACY = {"miou": "mIoU", "boundary_iou": "Boundary IoU"}
CALIBRATION = {"ece": "ECE", "nll": "NLL"}  # each also after temperature scaling (`<m>_scaled`)
HOLM_LEVEL = 0.05
UNKNOWN = "not recorded"  # collect.py's processor of an epoch no record names


def parameters(conf: Path = CONF) -> dict:
    """The evidence environment's parameters."""
    loader = ProjectConfigLoader(conf_source=str(conf), base_env="base", env="evidence")
    return loader["parameters"]


def grid(conf: Path = CONF) -> dict:
    """The evidence environment's ``study`` block."""
    return parameters(conf)["study"]


def configurations(study: dict) -> dict[str, tuple[str, bool]]:
    """Each configuration a user could ship: ``{run: (stage it is scored at, uses EFM)}``."""
    shipped = {}
    for name, variant in study["variants"].items():
        one_run = bool(variant.get("single_run"))
        efm = not one_run or bool(variant.get("training", {}).get("efm", {}).get("enabled"))
        shipped[name] = ("baseline" if one_run else "finetune", efm)
    return shipped


def starts_from_parent(project: dict, cell: Cell) -> bool:
    """Whether ``cell`` trains from its parent's checkpoint (its recipe's ``init_from``, as the
    study pipeline merges it: ``grid.cell_recipe``)."""
    base, overrides, _ = cell_recipe(
        project["study"], cell, project["training"],
        project.get(cell.stage, {}).get("overrides", {}), project["efm_method"],
    )  # fmt: skip
    return overrides.get("init_from", base.get("init_from")) == "previous"


def lineage(project: dict, cell: Cell) -> list[Cell]:
    """The cells a scored model comes from: ``cell``, then each parent its recipe starts from
    (fine-tuning from its run's EFM stage; an EFM stage with ``init_from: previous`` from the
    seed's baseline)."""
    chain = [cell]
    while (parent := chain[-1].parent) is not None and starts_from_parent(project, chain[-1]):
        chain.append(parent)
    return chain


def beats(row: pd.Series) -> bool:
    """The paired interval lies above 0 (accuracy: higher is better)."""
    return bool(row["ci_low"] > 0)


def loses(row: pd.Series) -> bool:
    return bool(row["ci_high"] < 0)


def held(row: pd.Series) -> bool:
    """Holm's adjustment keeps the result."""
    return bool(row["p_holm"] < HOLM_LEVEL)


def interval(row: pd.Series) -> str:
    return (
        f"{row['difference']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}], "
        f"{int(row['better'])}/{int(row['seeds'])} pairs"
    )


def p_text(value: float) -> str:
    return "n/a" if math.isnan(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def accuracy_text(row: pd.Series) -> str:
    mark = " **beats**" if beats(row) else " **loses**" if loses(row) else ""
    kept = "" if not mark or held(row) else " (uncorrected only)"
    return (
        f"{interval(row)}{mark}{kept}; p (Holm) {p_text(row['p_holm'])}; "
        f"detects {row['detectable']:.3f}"
    )


def calibration_text(row: pd.Series) -> str:
    # Lower is better: a gain is an interval below 0.
    mark = " **lower**" if loses(row) else " **higher**" if beats(row) else ""
    kept = "" if not mark or held(row) else " (uncorrected only)"
    return (
        f"{row['difference']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]{mark}{kept}; "
        f"p (Holm) {p_text(row['p_holm'])}"
    )


def uncorrected(row: pd.Series) -> str:
    """`` (uncorrected only)`` where Holm's adjustment does not keep the result."""
    return "" if held(row) else " (uncorrected only)"


def calibration_verdict(rows: dict, run: str, metric: str) -> str:
    """Whether ``run`` lowers ``metric`` against the reference, and whether that survives
    temperature scaling of both sides."""
    before, after = rows.get((run, metric)), rows.get((run, f"{metric}_scaled"))
    label = CALIBRATION[metric]
    if before is None or after is None:
        return f"{label}: not compared"
    if not loses(before):
        return f"{label}: no gain" + (" (higher)" if beats(before) else "")
    if loses(after):
        return f"{label}: lower, **survives scaling**{uncorrected(after)}"
    return f"{label}: lower, gone after scaling"


def metric_cells(rows: dict, run: str, metrics: dict[str, str], text) -> dict[str, str]:
    """One table cell per metric of ``run``: ``text(row)``, or n/a where it was not compared."""
    return {
        label: "n/a" if (run, metric) not in rows else text(rows[run, metric])
        for metric, label in metrics.items()
    }


def conclusion(low: float, high: float) -> str:
    return "above" if low > 0 else "below" if high < 0 else "no difference"


def same_processor(per_seed: pd.DataFrame, cells: pd.DataFrame, project: dict) -> pd.DataFrame:
    """Every pair's difference from the reference on each accuracy metric (by fold and seed),
    and whether all of its cells (both sides, with every cell a three-stage configuration
    starts from) trained on one and the same processor (``cells.csv``'s ``processors``; an
    epoch no record names counts as unknown, so its pair is not on one processor)."""
    processors = cells.set_index(["arch", "fold", "seed", "run", "stage"])["processors"]
    pairs = pair_differences(per_seed, REFERENCE, "baseline")
    pairs = pairs[pairs["metric"].isin(list(ACCURACY))].reset_index(drop=True)

    def on_one(row: pd.Series) -> bool:
        mine = Cell(row["arch"], row["fold"], int(row["seed"]), row["run"], row["stage"])
        names = set()
        for cell in [*lineage(project, mine), Cell(*astuple(mine)[:3], REFERENCE, "baseline")]:
            recorded = processors.get(astuple(cell), "")
            names |= set(recorded.split("; ")) if isinstance(recorded, str) and recorded else {""}
        return len(names) == 1 and not names & {"", UNKNOWN}

    pairs["same"] = [on_one(row) for _, row in pairs.iterrows()]
    return pairs


def processor_lines(pairs: pd.DataFrame, shipped: dict, rows: dict,
                    checked: dict[str, list[str]], confidence: float) -> list[str]:  # fmt: skip
    """The processor check (see the module's docstring), as Markdown lines; ``checked``: the
    metrics to compute again for each run checked (the primary comparison's, the default's)."""
    table, reversed_ = [], []
    for run, (stage, _) in shipped.items():
        mine = pairs[(pairs["run"] == run) & (pairs["stage"] == stage)]
        mine_miou = mine[mine["metric"] == "miou"]
        row = {
            "configuration": f"`{run}`",
            "pairs on one processor": f"{int(mine_miou['same'].sum())}/{len(mine_miou)}",
        }
        texts, agree = [], []
        for metric in checked.get(run, []):
            same = mine.loc[mine["same"] & (mine["metric"] == metric), "difference"]
            every = rows[run, metric]
            if len(same) >= 2:
                mean, low, high = t_interval(same, confidence)
                favour = int((same > 0).sum())
                texts.append(
                    f"{ACCURACY[metric]} {mean:+.4f} [{low:+.4f}, {high:+.4f}], "
                    f"{favour}/{len(same)} pairs"
                )
                on_all = conclusion(every["ci_low"], every["ci_high"])
                on_one = conclusion(low, high)
                if on_all == on_one:
                    agree.append(f"{ACCURACY[metric]}: yes ({on_all})")
                else:
                    agree.append(f"{ACCURACY[metric]}: **no** (all pairs: {on_all}; one "
                                 f"processor: {on_one})")  # fmt: skip
                    reversed_.append(f"`{run}` on {ACCURACY[metric]}")
            else:
                texts.append(f"{ACCURACY[metric]}: {len(same)} pair(s), no interval")
                agree.append(f"{ACCURACY[metric]}: cannot tell")
        row["difference on those pairs"] = "; ".join(texts)
        row["same conclusion"] = "; ".join(agree)
        table.append(row)
    checkable = any("cannot tell" not in row["same conclusion"] for row in table if
                    row["same conclusion"])  # fmt: skip
    outcome = (
        f"On those pairs alone the conclusion changes for {', '.join(reversed_)}: reported "
        "here, the answer above stands by its rules (all pairs)."
        if reversed_
        else "Where it could be checked, the conclusion is the same on those pairs alone."
        if checkable
        else "It could not be checked: fewer than two pairs trained on one processor."
    )
    return [
        "## Processors (a check beside the answer, not part of it)",
        "",
        "The grid trained on an Intel Xeon and an AMD EPYC. The same seeded run trained on "
        "both differs by about half to two thirds as much as two seeds do, and no offset "
        "between the processors was seen (validation IoU of twelve reference runs, "
        "`processor_noise.csv`). A pair counts as trained on one processor when both of its "
        "sides, with every cell a three-stage configuration starts from, trained on the same "
        "one. For the primary comparison and the new default, the difference again on those "
        "pairs:",
        "",
        to_markdown(pd.DataFrame(table)),
        "",
        outcome,
        "",
    ]


def gpu_variants(rows: dict, shipped: dict, default: str | None) -> list[str]:
    """The two configurations the GPU study trains beside the reference (the module's
    docstring says how they are chosen)."""
    ranked = sorted(
        shipped,
        key=lambda run: (
            float(rows[run, "miou"]["difference"]),
            float(rows[run, "boundary_iou"]["difference"]) if (run, "boundary_iou") in rows
            else -math.inf,
        ),
        reverse=True,
    )  # fmt: skip
    picks = list(dict.fromkeys([*([default] if default else []), *ranked]))[:2]
    if not any(shipped[run][1] for run in picks):
        picks[1] = next(run for run in ranked if shipped[run][1])
    return picks


def check_complete(paired: pd.DataFrame, rows: dict, shipped: dict, study: StudyParams) -> None:
    """Refuse an incomplete grid: every run and stage compared with the reference on mIoU on
    every fold and seed both train (``collect.py`` copies the latest reports, whatever grid
    they are from; Holm's family is every run and stage)."""
    if len(study.architectures) != 1 or paired["arch"].nunique() != 1:
        raise ValueError(
            f"answer.py reads one architecture; the grid has {study.architectures}, "
            f"paired.csv {sorted(paired['arch'].unique())}"
        )
    missing = [run for run in shipped if (run, "miou") not in rows]
    if missing:
        raise ValueError(
            f"no paired mIoU difference for {', '.join(missing)}: is the grid complete?"
        )
    counts = paired[paired["metric"] == "miou"].set_index(["run", "stage"])["seeds"]
    reference = set(study.run_seeds(REFERENCE))
    short = [
        f"{run}.{stage} ({int(counts.get((run, stage), 0))} of {expected})"
        for run, stages in study_runs(study).items()
        if run != REFERENCE
        for stage in stages
        if int(counts.get((run, stage), 0))
        != (expected := len(study.fold_names) * len(reference & set(study.run_seeds(run))))
    ]
    if short:
        raise ValueError(f"pairs missing for {', '.join(short)}: is the grid complete?")


def answer(paired: pd.DataFrame, per_fold: pd.DataFrame, convergence: pd.DataFrame,
           study: dict, per_seed: pd.DataFrame | None = None,
           cell_table: pd.DataFrame | None = None, project: dict | None = None) -> str:  # fmt: skip
    """The answer as Markdown (see the module's docstring for the rules); with ``per_seed``
    and ``cell_table`` (``cells.csv``), the processor check too, tracing each model's cells
    through ``project``'s recipes (the evidence environment's parameters by default)."""
    params = StudyParams.model_validate(study)
    shipped = configurations(study)
    rows = {
        (run, metric): row
        for (run, stage, metric), row in paired.set_index(["run", "stage", "metric"]).iterrows()
        if run in shipped and stage == shipped[run][0]
    }
    check_complete(paired, rows, shipped, params)
    family = paired.groupby("metric").size()
    lines = ["# The answer", ""]
    lines += [
        "Computed by [`answer.py`](answer.py) from `paired.csv`, `per_fold.csv`, "
        "`convergence.csv`, `per_seed.csv` and `cells.csv`, by the rules the README fixed "
        "before any test score was read. Holm's adjustment is over every comparison with the "
        f"reference on the same metric ({int(family.get('miou', 0))} on mIoU: each run and "
        "stage in `paired.csv`).",
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
    if (beats(primary) or loses(primary)) and not held(primary):
        verdict += f" (uncorrected only: Holm's p is {p_text(primary['p_holm'])})"
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
        "Each cell: mean paired difference [interval], pairs favouring the configuration; "
        "Holm's p; the smallest true difference its pairs detect at 80 % power.",
        "",
        to_markdown(pd.DataFrame(table)),
        "",
    ]
    chosen = next(
        ((max(winners[m])[1], m) for m in ACCURACY if winners[m]), None
    )  # mIoU first, then Boundary IoU
    miou_detects = [float(rows[run, "miou"]["detectable"]) for run in shipped]
    if chosen is None:
        lines += [
            "**None does.** At this scale (Dubai at 128², FPN-R18 from random weights, 180 "
            "epochs) EFM does not improve accuracy over one uninterrupted run of the same "
            "length, and neither does any other configuration tried. The shipped defaults stay; "
            "the README and the report say so. That is: no gain was detected. Each comparison "
            f"detects a true mIoU difference of {min(miou_detects):.3f} to "
            f"{max(miou_detects):.3f} or more at 80 % power (by its pairs); smaller gains are "
            "not ruled out.",
            "",
        ]
    else:
        run, metric = chosen
        row = rows[run, metric]
        other = next(m for m in ACCURACY if m != metric)
        efm_winners = sorted(
            f"`{r}` on {ACCURACY[m]}{uncorrected(rows[r, m])}"
            for m in ACCURACY
            for _, r in winners[m]
            if shipped[r][1]
        )
        notes = [("It uses EFM." if shipped[run][1] else "It does not use EFM.")]
        if (run, other) in rows and loses(rows[run, other]):
            notes.append(
                f"It scores below the reference on {ACCURACY[other]} "
                f"({interval(rows[run, other])}{uncorrected(rows[run, other])})."
            )
        if not shipped[run][1]:
            notes.append(
                f"EFM configurations that beat the reference too: {', '.join(efm_winners)}."
                if efm_winners
                else "No EFM configuration beats the reference on mIoU or Boundary IoU."
            )
        lines += [
            f"**`{run}` becomes the default** (the largest mean {ACCURACY[metric]} gain among "
            f"the configurations that beat the reference on it: {interval(row)}"
            + ("" if held(row) else "; it holds only uncorrected, Holm's p being "
               f"{p_text(row['p_holm'])}")
            + "). "
            + " ".join(notes),
            "",
        ]  # fmt: skip

    calibration, surviving = [], []
    scaled = {f"{m}_scaled": f"{label} (T-scaled)" for m, label in CALIBRATION.items()}
    for run, (stage, efm) in shipped.items():
        if not efm:
            continue
        cells = metric_cells(rows, run, {**CALIBRATION, **scaled}, calibration_text)
        verdicts = [calibration_verdict(rows, run, metric) for metric in CALIBRATION]
        surviving += [
            f"`{run}` on {v.split(':')[0]}{' (uncorrected only)' if 'uncorrected' in v else ''}"
            for v in verdicts
            if "survives" in v
        ]
        name = f"`{run}`" + (" (after fine-tuning)" if stage == "finetune" else "")
        calibration.append({"configuration": name, **cells, "verdict": "; ".join(verdicts)})
    lines += [
        "## What EFM changes: calibration",
        "",
        "Differences in ECE and NLL (lower is better), before and after temperature scaling of "
        "both sides (a temperature fitted on each cell's validation split); a calibration gain "
        "counts only if it survives the scaling.",
        "",
        to_markdown(pd.DataFrame(calibration)),
        "",
        (
            f"A calibration gain that survives temperature scaling: {', '.join(surviving)}."
            if surviving
            else "No EFM configuration keeps a calibration gain once both sides are "
            "temperature-scaled."
        ),
        "",
    ]

    picks = gpu_variants(rows, shipped, chosen[0] if chosen else None)
    definitions = yaml.safe_dump(
        {run: study["variants"][run] for run in picks}, sort_keys=False, allow_unicode=True
    )
    lines += [
        "## The GPU study's variants (issue 23, item 6)",
        "",
        f"{' and '.join(f'`{run}`' for run in picks)}: the rule (the README's \"The GPU "
        "study's variants\") picks the new default if there is one, then the largest mean "
        "mIoU differences from the reference, with at least one EFM configuration. Their "
        "definitions, for `study.variants` in `conf/gpu_study/parameters_study.yml`:",
        "",
        "```yaml",
        definitions.rstrip(),
        "```",
        "",
    ]

    fails = convergence.drop_duplicates("fold")
    failing = list(fails.loc[fails["fold_fails"].astype(bool), "fold"])
    allowed = params.convergence.failing_folds
    met = len(failing) <= allowed
    pairs = sorted({int(row["seeds"]) for (_, m), row in rows.items() if m in ACCURACY})
    lines += [
        "## Limits",
        "",
        f"- The reference was still improving on {len(failing)} of {len(fails)} folds"
        + (f" ({', '.join(failing)})" if failing else "")
        + " when it stopped (its validation IoU over the last 20 % of epochs, mean over its "
        f"seeds): the pre-registered plateau rule (at most {allowed} such folds) is "
        + ("met." if met else "**not met**: the reference had not converged by that rule, ")
        + ("" if met else "and the answer holds for this length (180 epochs), not for "
           "converged models."),
        f"- Pairs per comparison: {' or '.join(map(str, pairs))}. The primary comparison "
        f"detects {primary['detectable']:.4f} mIoU at 80 % power; the issue's target was 0.01.",
        "",
    ]  # fmt: skip
    if per_seed is not None and cell_table is not None:
        checked = {PRIMARY: ["miou"]}
        if chosen:  # the default, on the metric it was chosen on
            checked[chosen[0]] = list(dict.fromkeys([*checked.get(chosen[0], []), chosen[1]]))
        pairs_table = same_processor(per_seed, cell_table, project or parameters())
        lines += processor_lines(pairs_table, shipped, rows, checked, float(primary["confidence"]))
    return "\n".join(lines)


def main(folder: Path) -> int:
    names = ("paired", "per_fold", "convergence", "per_seed", "cells")
    reports = {name: folder / f"{name}.csv" for name in names}
    absent = [str(path) for path in reports.values() if not path.is_file()]
    if absent:
        print(f"missing {', '.join(absent)}: run collect.py once the grid is complete")
        return 1
    paired, per_fold, convergence, per_seed, cells = (
        pd.read_csv(path, keep_default_na=name != "cells") for name, path in reports.items()
    )
    text = answer(paired, per_fold, convergence, grid(), per_seed, cells)
    (folder / "answer.md").write_text(text + "\n")
    print(f"wrote {folder / 'answer.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
