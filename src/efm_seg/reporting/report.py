"""Tables and the self-contained HTML report of a run (paper section 4, Tables 1-2).

Plain functions without Kedro; the reporting nodes call them and save what they return.

Inputs (as produced by the evaluation nodes):

* **stage metrics** -- a :class:`pandas.DataFrame` with one row per ``(stage, tta)`` and the
  columns ``stage`` (``baseline`` / ``efm`` / ``finetune``), ``tta`` (bool), ``accuracy``,
  ``precision``, ``recall``, ``iou``, ``f1``, ``miou``, ``mf1``, ``boundary_iou``, ``ece``;
* **per-class metrics** -- a DataFrame with one row per ``(stage, tta, class_name)`` and the
  columns ``support``, ``iou``, ``f1``, ``precision``, ``recall``, ``boundary_iou``.

:func:`stage_table` and :func:`per_class_table` turn them into the report tables (rows Baseline /
+EFM / +EFM fine-tuning, as in the paper's Tables 1-2 but transposed so that a stage is a row),
:func:`to_markdown` writes any table as GitHub Markdown (``tabulate`` is not needed), and
:func:`html_report` assembles ONE HTML file -- configuration, tables, figures (embedded as base64
PNG), each with a heading and a sentence on what it shows -- that opens without network access.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = [
    "METRIC_LABELS",
    "STAGE_LABELS",
    "STAGE_ORDER",
    "figure_png",
    "html_report",
    "per_class_table",
    "stage_label",
    "stage_table",
    "to_markdown",
]

#: Display names of the three training stages, in the paper's order, then the equal-budget
#: baseline (the reference a stage's gain is measured against).
STAGE_LABELS: dict[str, str] = {
    "baseline": "Baseline",
    "efm": "+EFM",
    "finetune": "+EFM fine-tuning",
    "baseline_equal": "Baseline, equal budget",
}
#: Stage keys in report order.
STAGE_ORDER: tuple[str, ...] = tuple(STAGE_LABELS)

#: Metric column -> display name (the paper's Tables 1-2 first, then the extra metrics).
METRIC_LABELS: dict[str, str] = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "iou": "IoU",
    "f1": "F1",
    "miou": "mIoU",
    "mf1": "mF1",
    "boundary_iou": "Boundary IoU",
    "ece": "ECE",
}
_STAGE_TABLE_COLUMNS = (
    "accuracy",
    "precision",
    "recall",
    "iou",
    "f1",
    "miou",
    "boundary_iou",
    "ece",
)
STAGE_COLUMN = "Training stage"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def stage_label(stage: str) -> str:
    """Display name of a stage key (unknown keys are shown as they are)."""
    return STAGE_LABELS.get(stage, stage)


def _stage_sort_key(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage), "") if stage in STAGE_ORDER else (len(STAGE_ORDER), stage)


def _select_tta(frame: pd.DataFrame, tta: bool) -> pd.DataFrame:
    if "tta" not in frame.columns:
        return frame
    return frame[frame["tta"].astype(bool) == bool(tta)]


# -- tables ---------------------------------------------------------------------------------------
def stage_table(stage_metrics: pd.DataFrame, tta: bool = False) -> pd.DataFrame:
    """The stage comparison table (paper Tables 1-2, one row per stage).

    Args:
        stage_metrics: One row per ``(stage, tta)`` with the columns ``stage``, ``tta`` and the
            metric columns ``accuracy, precision, recall, iou, f1, miou, boundary_iou, ece``
            (fractions in 0..1; a missing metric column gives an empty column).
        tta: Which evaluation to show: with test-time augmentation (``True``) or without.

    Returns:
        A DataFrame with the column ``Training stage`` (``Baseline``, ``+EFM``,
        ``+EFM fine-tuning``; only the stages present, always in this order; unknown stage keys
        follow, sorted) and the metric columns ``Accuracy, Precision, Recall, IoU, F1, mIoU,
        Boundary IoU, ECE``. The stage is a column, not the index, so that a CSV writer that drops
        the index (Kedro's ``pandas.CSVDataset`` does by default) keeps it.

    Raises:
        ValueError: ``stage`` column missing, or a stage with more than one row for ``tta``.
    """
    if "stage" not in stage_metrics.columns:
        raise ValueError("stage_metrics needs a 'stage' column")
    rows = _select_tta(stage_metrics, tta)
    duplicated = rows["stage"][rows["stage"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"more than one row for stage(s) {duplicated} with tta={tta}")
    rows = rows.set_index("stage")
    stages = sorted(rows.index, key=_stage_sort_key)
    table = pd.DataFrame({STAGE_COLUMN: [stage_label(s) for s in stages]})
    for column in _STAGE_TABLE_COLUMNS:
        values = rows[column].reindex(stages) if column in rows.columns else np.nan
        table[METRIC_LABELS[column]] = np.asarray(values, dtype=float) if stages else []
    return table


def per_class_table(
    per_class: pd.DataFrame,
    tta: bool = False,
    metrics: Sequence[str] = ("iou", "f1", "boundary_iou"),
) -> pd.DataFrame:
    """Per-class metrics, one row per class, one column per (metric, stage).

    Args:
        per_class: One row per ``(stage, tta, class_name)`` with ``support`` and the metric
            columns (``iou, f1, precision, recall, boundary_iou``).
        tta: Which evaluation to show (with or without test-time augmentation).
        metrics: The metric columns to show, in this order.

    Returns:
        Columns ``Class``, ``Support`` (pixels of the class in the test ground truth, taken from
        the first stage) and ``"<Metric> (<Stage>)"`` for every metric and stage present (stages
        in report order); classes in the order they first appear.
    """
    rows = _select_tta(per_class, tta)
    stages = sorted(rows["stage"].unique(), key=_stage_sort_key)
    classes = list(dict.fromkeys(rows["class_name"]))
    table = pd.DataFrame({"Class": classes})
    if "support" in rows.columns and stages:
        first = rows[rows["stage"] == stages[0]].drop_duplicates("class_name", keep="last")
        table["Support"] = first.set_index("class_name")["support"].reindex(classes).to_numpy()
    for metric in metrics:
        for stage in stages:
            this = rows[rows["stage"] == stage].drop_duplicates("class_name", keep="last")
            values = (
                this.set_index("class_name")[metric].reindex(classes).to_numpy(dtype=float)
                if metric in this.columns
                else np.full(len(classes), np.nan)
            )
            table[f"{METRIC_LABELS.get(metric, metric)} ({stage_label(stage)})"] = values
    return table


# -- cell formatting ------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool | np.bool_)


def _format_cell(value: Any, floatfmt: str) -> str:
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return format(float(value), floatfmt)
    return str(value)


def _with_index(df: pd.DataFrame, index: bool | None) -> pd.DataFrame:
    """Move a meaningful index into the columns (a default RangeIndex is dropped)."""
    if index is None:
        index = not (isinstance(df.index, pd.RangeIndex) and df.index.name is None)
    return df.reset_index() if index else df


def _numeric_columns(df: pd.DataFrame) -> list[bool]:
    return [
        pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
        for c in df.columns
    ]


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4f", index: bool | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (no ``tabulate`` needed).

    Args:
        df: The table. Column names and cells are written with ``str``; ``|`` is escaped and line
            breaks become spaces, so any text is safe inside the table.
        floatfmt: Format spec of real numbers (integers are written as they are, NaN as ``–``,
            booleans as yes/no).
        index: Write the index as the first column; ``None`` does so unless it is a default
            unnamed ``RangeIndex``.

    Returns:
        Header row, separator row (numeric columns right-aligned) and one row per record, each
        line ending in a newline.
    """
    df = _with_index(df, index)

    def clean(text: str) -> str:
        return " ".join(text.replace("|", "\\|").splitlines())

    header = [clean(str(c)) for c in df.columns]
    body = [[clean(_format_cell(v, floatfmt)) for v in row] for row in df.itertuples(index=False)]
    numeric = _numeric_columns(df)
    widths = [max([len(h), 3, *(len(r[i]) for r in body)]) for i, h in enumerate(header)]

    def line(cells: Iterable[str]) -> str:
        padded = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    separator = "|" + "|".join(
        ("-" * (w + 1) + ":") if num else (":" + "-" * (w + 1))
        for w, num in zip(widths, numeric, strict=True)
    )
    lines = [line(header), separator + "|", *(line(r) for r in body)]
    return "\n".join(lines) + "\n"


# -- figures --------------------------------------------------------------------------------------
def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (white background, the figure's own size: width x dpi pixels).

    The figures of :mod:`efm_seg.reporting.figures` use the constrained layout, so titles, colour
    bars and legends fit without ``bbox_inches="tight"`` (which would shrink small text figures).
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def _png_bytes(figure: Figure | bytes, dpi: int) -> bytes:
    if isinstance(figure, Figure):
        return figure_png(figure, dpi=dpi)
    data = bytes(figure)
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("figures must be matplotlib Figures or PNG bytes")
    return data


# -- HTML -----------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.3rem}
h2{margin-top:2.2rem;border-bottom:1px solid #eee}
h3{margin-bottom:.2rem}
p.desc{margin-top:.2rem;color:#444}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.92rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem}
th{background:#f3f3f3;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafafa}
img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f7f7f7;padding:.8rem;overflow-x:auto;font-size:.85rem}
details summary{cursor:pointer;font-weight:600}
nav ul{columns:2;font-size:.92rem}
""".strip()


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        plain = value and value.strip() == value and not any(ch in value for ch in ":#{}[]\n'\"")
        return value if plain else json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def _yaml_lines(value: Any, indent: int = 0) -> list[str]:
    """A YAML-like rendering of nested mappings / sequences (for reading, not for parsing)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        for key, item in value.items():
            if isinstance(item, Mapping | list | tuple) and item:
                if isinstance(item, list | tuple) and all(
                    not isinstance(v, Mapping | list | tuple) for v in item
                ):
                    lines.append(f"{pad}{key}: [{', '.join(_scalar_text(v) for v in item)}]")
                else:
                    lines.append(f"{pad}{key}:")
                    lines.extend(_yaml_lines(item, indent + 1))
            else:
                text = "[]" if isinstance(item, list | tuple) else _scalar_text(item)
                text = "{}" if isinstance(item, Mapping) else text
                lines.append(f"{pad}{key}: {text}")
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, Mapping | list | tuple) and item:
                sub = _yaml_lines(item, indent + 1)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_scalar_text(item)}")
    else:
        lines.append(pad + _scalar_text(value))
    return lines


def _html_table(df: pd.DataFrame, floatfmt: str) -> str:
    df = _with_index(df, None)
    numeric = _numeric_columns(df)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for record in df.itertuples(index=False):
        cells = "".join(
            f"<td{' class=num' if num else ''}>{html.escape(_format_cell(v, floatfmt))}</td>"
            for v, num in zip(record, numeric, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_report(
    *,
    title: str,
    configuration: Mapping[str, Any],
    tables: Sequence[tuple[str, str, pd.DataFrame]],
    figures: Sequence[tuple[str, str, Figure | bytes]],
    intro: str | None = None,
    floatfmt: str = ".4f",
    dpi: int = 110,
    provenance: Sequence[tuple[str, str, pd.DataFrame]] = (),
) -> str:
    """One self-contained HTML page showing a run.

    Args:
        title: Page title and top heading.
        configuration: The run's parameters (nested mappings / lists / scalars), shown in a
            collapsible ``<details>`` block in a YAML-like rendering.
        tables: ``(heading, sentence on what it shows, DataFrame)`` in display order.
        figures: ``(heading, sentence on what it shows, Figure or PNG bytes)`` in display order;
            Figures are rendered at ``dpi``; every image is embedded as a base64 ``data:`` URI.
        intro: An optional paragraph under the title.
        floatfmt: Format spec of the real numbers in the tables.
        dpi: Resolution used for Figures.
        provenance: ``(heading, sentence, DataFrame)`` tables saying where the results come from
            (runs, data, recipe, versions), shown in a section after the figures.

    Returns:
        The HTML document: inline CSS, no scripts, no external resources; every text given is
        HTML-escaped.
    """
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if intro:
        parts.append(f"<p>{esc(intro)}</p>")

    contents = [f'<li><a href="#table-{i}">{esc(h)}</a></li>' for i, (h, _, _) in enumerate(tables)]
    contents += [
        f'<li><a href="#figure-{i}">{esc(h)}</a></li>' for i, (h, _, _) in enumerate(figures)
    ]
    if provenance:
        contents.append('<li><a href="#provenance">Provenance</a></li>')
    if contents:
        parts.append(f"<nav><h2>Contents</h2><ul>{''.join(contents)}</ul></nav>")

    config_text = "\n".join(_yaml_lines(dict(configuration))) if configuration else "(empty)"
    parts += [
        '<h2 id="configuration">Configuration</h2>',
        "<details><summary>Parameters of this run (click to expand)</summary>",
        f"<pre>{esc(config_text)}</pre></details>",
    ]

    if tables:
        parts.append("<h2>Tables</h2>")
    for i, (heading, sentence, frame) in enumerate(tables):
        parts += [
            f'<section id="table-{i}"><h3>{esc(heading)}</h3>',
            f'<p class="desc">{esc(sentence)}</p>',
            _html_table(frame, floatfmt),
            "</section>",
        ]

    if figures:
        parts.append("<h2>Figures</h2>")
    for i, (heading, sentence, figure) in enumerate(figures):
        data = base64.b64encode(_png_bytes(figure, dpi)).decode("ascii")
        parts += [
            f'<section id="figure-{i}"><h3>{esc(heading)}</h3>',
            f'<p class="desc">{esc(sentence)}</p>',
            f'<img src="data:image/png;base64,{data}" alt="{esc(heading)}">',
            "</section>",
        ]

    if provenance:
        parts.append('<h2 id="provenance">Provenance</h2>')
    for heading, sentence, frame in provenance:
        parts += [
            f"<section><h3>{esc(heading)}</h3>",
            f'<p class="desc">{esc(sentence)}</p>',
            _html_table(frame, floatfmt),
            "</section>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
