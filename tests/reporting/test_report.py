"""Stage tables, the Markdown writer and the self-contained HTML report."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from efm_seg.reporting import (
    STAGE_LABELS,
    figure_png,
    html_report,
    per_class_table,
    stage_table,
    to_markdown,
)

METRICS = ("accuracy", "precision", "recall", "iou", "f1", "miou", "mf1", "boundary_iou", "ece")
COLUMNS = [
    "Training stage",
    "Accuracy",
    "Precision",
    "Recall",
    "IoU",
    "F1",
    "mIoU",
    "Boundary IoU",
    "ECE",
]


def stage_metrics(stages=("finetune", "baseline", "efm")) -> pd.DataFrame:
    rows = []
    for k, stage in enumerate(stages):
        for tta in (False, True):
            value = 0.5 + 0.1 * k + (0.01 if tta else 0.0)
            rows.append({"stage": stage, "tta": tta, **dict.fromkeys(METRICS, value)})
    return pd.DataFrame(rows)


def small_figure() -> Figure:
    fig = Figure(figsize=(3, 2))
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def test_stage_labels():
    assert STAGE_LABELS == {
        "baseline": "Baseline",
        "efm": "+EFM",
        "finetune": "+EFM fine-tuning",
        "baseline_equal": "Baseline, equal budget",
    }


def test_stage_table_has_the_three_stages_in_paper_order():
    table = stage_table(stage_metrics(), tta=False)
    assert list(table.columns) == COLUMNS
    assert table["Training stage"].tolist() == ["Baseline", "+EFM", "+EFM fine-tuning"]
    # input order was finetune, baseline, efm -> values follow their stage
    assert table["IoU"].tolist() == pytest.approx([0.6, 0.7, 0.5])
    assert stage_table(stage_metrics(), tta=True)["IoU"].tolist() == pytest.approx(
        [0.61, 0.71, 0.51]
    )


def test_stage_table_keeps_only_present_stages():
    table = stage_table(stage_metrics(stages=("efm", "baseline")), tta=False)
    assert table["Training stage"].tolist() == ["Baseline", "+EFM"]
    assert stage_table(stage_metrics(stages=("finetune",)), tta=True).shape == (1, 9)


def test_stage_table_missing_metric_is_empty_and_duplicates_are_refused():
    metrics = stage_metrics().drop(columns=["ece"])
    assert stage_table(metrics)["ECE"].isna().all()
    with pytest.raises(ValueError, match="more than one row"):
        stage_table(pd.concat([metrics, metrics]))


def test_markdown_has_header_separator_and_three_rows():
    text = to_markdown(stage_table(stage_metrics()))
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 3
    assert [c.strip() for c in lines[0].strip("|").split("|")] == COLUMNS
    assert re.fullmatch(r"\|:-+(\|-+:)+\|", lines[1])
    assert lines[2].startswith("| Baseline") and "0.6000" in lines[2]
    assert lines[4].startswith("| +EFM fine-tuning")
    assert all(line.count("|") == len(COLUMNS) + 1 for line in lines)


def test_markdown_escapes_pipes_formats_missing_values_and_writes_named_index():
    frame = pd.DataFrame({"a": ["x|y", "two\nlines"], "b": [1.23456, np.nan], "n": [3, 4]})
    lines = to_markdown(frame.set_index("a"), floatfmt=".2f").splitlines()
    assert lines[0].split("|")[1].strip() == "a"  # named index becomes a column
    assert "x\\|y" in lines[2] and "1.23" in lines[2] and "two lines" in lines[3]
    assert "–" in lines[3]


def test_per_class_table_one_row_per_class_columns_per_stage():
    rows = [
        {
            "stage": s,
            "tta": False,
            "class_name": c,
            "support": 100 * (k + 1),
            "iou": 0.5,
            "f1": 0.6,
            "boundary_iou": 0.3,
        }
        for s in ("efm", "baseline")
        for k, c in enumerate(("land", "water"))
    ]
    table = per_class_table(pd.DataFrame(rows))
    assert table["Class"].tolist() == ["land", "water"]
    assert table["Support"].tolist() == [100, 200]
    assert list(table.columns[2:4]) == ["IoU (Baseline)", "IoU (+EFM)"]
    assert table.shape == (2, 2 + 3 * 2)


def test_figure_png_is_a_png_of_the_figure_size():
    data = figure_png(small_figure(), dpi=100)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (300, 200)


def test_html_report_is_self_contained_escaped_and_complete():
    table = stage_table(stage_metrics())
    table.loc[0, "Training stage"] = "<script>alert(1)</script>"
    png = figure_png(small_figure(), dpi=50)
    html = html_report(
        title="Run <FPN> & co",
        configuration={"model": {"arch": "FPN", "encoder": "resnet34"}, "epochs": [30, 15]},
        tables=[("Stage comparison", "Test metrics per stage, as in Tables 1-2.", table)],
        figures=[
            ("Training curves", "Loss and IoU over the epochs of all stages.", small_figure()),
            ("Ready-made PNG", "A figure given as PNG bytes.", png),
        ],
    )
    for text in (
        "Stage comparison",
        "Test metrics per stage, as in Tables 1-2.",
        "Training curves",
        "Loss and IoU over the epochs of all stages.",
        "Ready-made PNG",
        "A figure given as PNG bytes.",
        "+EFM fine-tuning",
        "arch: FPN",
        "<details>",
    ):
        assert text in html
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Run &lt;FPN&gt; &amp; co" in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing external

    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 2
    for encoded in images:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
            image.verify()
    assert base64.b64decode(images[1]) == png


def test_html_report_refuses_non_png_bytes():
    with pytest.raises(ValueError, match="PNG"):
        html_report(title="t", configuration={}, tables=[], figures=[("f", "s", b"GIF89a")])
