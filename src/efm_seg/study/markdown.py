"""The study's Markdown: mean ± std, paired differences against the equal-budget baseline, and
the per-seed values."""

from __future__ import annotations

import math

import pandas as pd

from efm_seg.parameters import StudyParams
from efm_seg.reporting.report import to_markdown
from efm_seg.study.analysis import LOWER_IS_BETTER, METRICS
from efm_seg.study.grid import BASELINE, REFERENCE


def run_label(run: str, stage: str) -> str:
    """``efm_full`` → ``efm_full (after fine-tuning)``; a one-run variant (its one stage is
    ``baseline``) → ``focal (one run)``; the baselines by what they are."""
    if run == REFERENCE:
        return "baseline, equal budget"
    if run == BASELINE:
        return "baseline, paper schedule"
    if stage == "baseline":
        return f"{run} (one run)"
    return f"{run} ({'after fine-tuning' if stage == 'finetune' else 'EFM stage'})"


def _extra_seeds_text(study: StudyParams) -> str:
    extra = study.extra_seeds
    if extra is None:
        return ""
    return (
        f" (and {', '.join(map(str, extra.seeds))} for "
        f"{', '.join(f'`{run}`' for run in extra.runs)})"
    )


def _interval(row: pd.Series) -> str:
    if math.isnan(row["ci_low"]):
        return f"{row['difference']:+.4f} (n = 1)"
    return (
        f"{row['difference']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] "
        f"{row['better']}/{row['seeds']}"
    )


def study_markdown(
    study: StudyParams,
    summary: pd.DataFrame,
    paired: pd.DataFrame,
    per_seed: pd.DataFrame,
    convergence: pd.DataFrame | None = None,
    per_fold: pd.DataFrame | None = None,
) -> str:
    """The study's tables, one section per architecture (with the reference's convergence
    first, when its validation curves are given, and the differences fold by fold when the
    study has folds and ``per_fold`` is given)."""
    epochs = study.epochs
    lines = [
        "# EFM study",
        "",
        f"Architectures {', '.join(study.architectures)}; seeds {study.seeds}"
        + _extra_seeds_text(study)
        + "; "
        + (
            f"folds {', '.join(study.folds)} (each: a split given outright); "
            if study.folds
            else ""
        )
        + f"epochs baseline {epochs.baseline}, EFM {epochs.efm}, fine-tuning {epochs.finetune} "
        f"(equal-budget baseline and one-run variants: {epochs.total}); scores "
        f"{'with' if study.tta else 'without'} TTA on the evaluation split"
        + (" of each fold." if study.folds else "."),
        "",
        f"Paired differences are run − equal-budget baseline, paired by "
        f"{'fold and seed' if study.folds else 'seed'}, with a {study.confidence:.0%} t interval "
        f"and how many pairs favour the run (higher is better, except "
        f"{', '.join(METRICS[m] for m in sorted(LOWER_IS_BETTER))}: lower).",
        "",
    ]
    if study.extra_seeds is not None:
        lines += [
            "The runs with extra seeds are averaged over more cells in the means below; compare "
            "runs by their paired differences, which pair each run with the equal-budget "
            "baseline's cells of the same folds and seeds only.",
            "",
        ]
    descriptions = {name: v.description for name, v in study.variants.items() if v.description}
    if descriptions:
        lines += ["Variants:", ""]
        lines += [f"- `{name}`: {text}" for name, text in descriptions.items()]
        lines.append("")
    for arch in study.architectures:
        rows = summary[summary["arch"] == arch]
        table = pd.DataFrame(
            {
                "run": [run_label(r, s) for r, s in zip(rows["run"], rows["stage"], strict=True)],
                **{
                    label: [
                        f"{m:.4f} ± {0.0 if math.isnan(s) else s:.4f}"
                        for m, s in zip(rows[f"{key}_mean"], rows[f"{key}_std"], strict=True)
                    ]
                    for key, label in METRICS.items()
                },
                "seeds": rows["seeds"].to_list(),
            }
        )
        lines += [f"## {arch}", ""]
        if convergence is not None:
            lines += _convergence_section(convergence[convergence["arch"] == arch], study)
        lines += ["### Mean ± std over seeds", "", to_markdown(table)]
        diffs = paired[paired["arch"] == arch]
        if not diffs.empty:
            wide = diffs.assign(
                text=diffs.apply(_interval, axis=1),
                label=diffs.apply(lambda r: run_label(r["run"], r["stage"]), axis=1),
            ).pivot(index="label", columns="metric", values="text")
            order = list(dict.fromkeys(run_label(r, s) for r, s in zip(
                diffs["run"], diffs["stage"], strict=True
            )))  # fmt: skip
            wide = wide.loc[order, [m for m in METRICS if m in wide.columns]]
            wide.columns = [METRICS[m] for m in wide.columns]
            wide.index.name = "run − equal-budget baseline"
            lines += ["### Paired difference against the equal-budget baseline", ""]
            lines += [to_markdown(wide, index=True)]
            lines += ["", *_power_section(diffs, study.confidence, order)]
            if per_fold is not None and study.folds:
                lines += _per_fold_section(per_fold[per_fold["arch"] == arch], order)
        seeds = per_seed[per_seed["arch"] == arch].assign(
            label=lambda f: [run_label(r, s) for r, s in zip(f["run"], f["stage"], strict=True)]
        )
        for fold, cells in seeds.groupby("fold", sort=False):
            by_seed = cells.pivot_table(index="label", columns="seed", values="miou", sort=False)
            by_seed.columns = [f"seed {s}" for s in by_seed.columns]
            by_seed.index.name = "mIoU per seed"
            title = "### mIoU per seed" + ("" if fold == "split" else f", fold {fold}")
            lines += [title, "", to_markdown(by_seed, index=True)]
    return "\n".join(lines)


def _convergence_section(table: pd.DataFrame, study: StudyParams) -> list[str]:
    """Whether the equal-budget reference had stopped improving, fold by fold."""
    if table.empty:
        return []
    rule = study.convergence
    folds = table.drop_duplicates("fold").set_index("fold")
    failing = list(folds.index[folds["fold_fails"].astype(bool)])
    verdict = (
        f"**Not converged: {len(failing)} of {len(folds)} folds' reference runs were still "
        f"improving** ({', '.join(failing)}), more than the {rule.failing_folds} allowed. "
        "A longer budget could change the comparison below: lengthen `study.epochs` before "
        "drawing an answer."
        if len(failing) > rule.failing_folds
        else f"Converged: {len(failing)} of {len(folds)} folds fail"
        + (f" ({', '.join(failing)})" if failing else "")
        + f", {rule.failing_folds} allowed."
    )
    shown = pd.DataFrame(
        {
            "epochs": folds["epochs"].astype(int),
            "from epoch": folds["from_epoch"].astype(int),
            "mean gain": folds["fold_gain"].map(lambda v: f"{v:+.4f}"),
            "fails": folds["fold_fails"].map(lambda v: "yes" if v else "no"),
        }
    )
    shown.index.name = "fold"
    return [
        "### Has the reference converged?",
        "",
        f"The equal-budget baseline's validation IoU gained over its last "
        f"{rule.last_fraction:.0%} of epochs, averaged over its seeds; a fold fails at "
        f"{rule.tolerance} or more (`study.convergence`). Validation only: no test score is read.",
        "",
        to_markdown(shown, index=True),
        "",
        verdict,
        "",
    ]


POWERED = ("miou", "boundary_iou")
"""The metrics whose power the tables report: the two the study's question is about."""


def _per_fold_section(per_fold: pd.DataFrame, order: list[str]) -> list[str]:
    """mIoU and Boundary IoU differences against the reference, one column per fold."""
    lines = []
    for metric in POWERED:
        rows = per_fold[per_fold["metric"] == metric]
        if rows.empty:
            continue
        wide = rows.assign(
            label=[run_label(r, s) for r, s in zip(rows["run"], rows["stage"], strict=True)]
        ).pivot(index="label", columns="fold", values="difference")
        wide = wide.reindex([label for label in order if label in wide.index])
        wide = wide[list(dict.fromkeys(rows["fold"]))]
        wide.index.name = "run − equal-budget baseline"
        lines += [
            f"### {METRICS[metric]} difference per fold (mean over its seeds)",
            "",
            to_markdown(wide.map(lambda v: "n/a" if pd.isna(v) else f"{v:+.4f}"), index=True),
            "",
        ]
    return lines


def _value_text(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.4f}"


def _p_text(value: float) -> str:
    if pd.isna(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _power_section(diffs: pd.DataFrame, confidence: float, order: list[str]) -> list[str]:
    """The paired differences' spread, and the smallest difference each comparison detects."""
    chosen = diffs[diffs["metric"].isin(POWERED)].assign(
        label=lambda f: [run_label(r, s) for r, s in zip(f["run"], f["stage"], strict=True)]
    )
    if chosen.empty:
        return []
    columns = {}
    for metric in POWERED:
        rows = chosen[chosen["metric"] == metric].set_index("label")
        columns[f"{METRICS[metric]} sd"] = rows["sd"]
        columns[f"{METRICS[metric]} detectable"] = rows["detectable"]
        if "p_holm" in rows:
            columns[f"{METRICS[metric]} p (Holm)"] = rows["p_holm"]
    shown = set(chosen["label"])
    table = pd.DataFrame(columns).reindex([label for label in order if label in shown])
    table.index.name = "run"
    shown_table = pd.DataFrame(
        {
            name: values.map(_p_text if name.endswith("(Holm)") else _value_text)
            for name, values in table.items()
        },
        index=table.index,
    )
    return [
        "### Power",
        "",
        f"The paired differences' standard deviation, and the smallest true difference a paired "
        f"t test over these seeds detects with 80 % power ({1 - confidence:.0%} two-sided). "
        "A difference below it can go unseen. p (Holm): the paired t test's p-value adjusted "
        "for every run compared on the metric; with many runs, an interval that excludes 0 by "
        "chance is likely somewhere, and this says whether one holds once that is allowed for.",
        "",
        to_markdown(shown_table, index=True),
        "",
    ]
