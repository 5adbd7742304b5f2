"""The report figures: structure (axes, titles, colour bars), PNG output and edge cases."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image

from efm_seg.reporting import (
    STAGE_COLOURS,
    colourise,
    confusion_figure,
    difference_map,
    evolution_grid,
    figure_png,
    per_class_bars,
    qualitative,
    training_curves,
)

STAGES = ("baseline", "efm", "finetune")
CLASS_NAMES = ["land", "building", "road", "water"]
CLASS_COLOURS = [(210, 180, 140), (60, 16, 152), (110, 193, 228), (30, 80, 200)]
IGNORE = 255
DPI = 100


def history(epochs: int = 6, efm: bool = True) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    rising = 1 - np.exp(-e / 3)
    frame = {"epoch": e, "lr": 1e-3, "seconds": 1.0}
    for split, shift in (("train", 0.05), ("val", 0.0)):
        frame[f"{split}_loss"] = np.exp(-e / 3) + shift
        for metric in ("iou", "f1", "accuracy"):
            frame[f"{split}_{metric}"] = 0.5 * rising + shift
    frame["efm_active"] = efm & (e >= 2)
    frame["efm_refreshed"] = efm & (e % 2 == 0)
    return pd.DataFrame(frame)


def snapshots(epochs: int = 3, n: int = 2, size: int = 32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    efm = rng.integers(0, 256, (epochs, n, size, size), dtype=np.uint8)
    return {
        "epochs": np.arange(1, epochs + 1, dtype=np.int64) * 2,
        "ids": np.array([f"img{i}" for i in range(n)]),
        "efm": efm,
        "entropy": (efm / 255.0 * np.log(4)).astype(np.float16),
    }


def png_size(fig: Figure) -> tuple[int, int]:
    data = figure_png(fig, dpi=DPI)
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def image_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def colourbars(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def texts(fig: Figure) -> str:
    return " ".join(t.get_text() for t in fig.texts)


def test_training_curves_has_four_labelled_panels_and_a_legend():
    fig = training_curves({s: history(efm=s != "baseline") for s in STAGES}, title="FPN")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    assert fig.get_suptitle() == "FPN"
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "IoU", "F1", "accuracy"]
    assert "epoch" in fig.axes[-1].get_xlabel()
    # three stages on one continuous axis: 18 epochs, 2 stage boundaries
    assert fig.axes[0].get_xlim() == (0.5, 18.5)
    assert len(fig.legends) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"Baseline", "+EFM", "+EFM fine-tuning", "training", "validation"} <= set(labels)
    assert "EFM recomputed" in labels
    colours = {line.get_color() for line in fig.axes[0].get_lines()}
    assert {STAGE_COLOURS[stage] for stage in STAGES} <= colours
    width, height = png_size(fig)
    assert width >= 600 and height >= 400


def test_training_curves_without_history_is_a_text_figure():
    fig = training_curves({"baseline": history().iloc[:0]})
    assert not fig.axes and "no training history" in texts(fig)


@pytest.mark.parametrize(("kind", "label"), [("efm", "EFM (0–1)"), ("entropy", "entropy (nats)")])
def test_evolution_grid_rows_images_columns_epochs_one_colourbar(kind, label):
    snaps = snapshots(epochs=3, n=2)
    fig = evolution_grid(snaps, kind, "efm")
    panels = image_axes(fig)
    assert len(panels) == 2 * 3
    assert [ax.get_title() for ax in panels[:3]] == ["epoch 2", "epoch 4", "epoch 6"]
    assert [panels[0].get_ylabel(), panels[3].get_ylabel()] == ["img0", "img1"]
    bars = colourbars(fig)
    assert len(bars) == 1 and bars[0].get_ylabel() == label
    assert "+EFM" in fig.get_suptitle()
    norm = panels[0].images[0].norm
    assert norm.vmin == 0.0
    if kind == "efm":
        assert norm.vmax == 1.0
        np.testing.assert_allclose(panels[0].images[0].get_array(), snaps["efm"][0, 0] / 255)
    else:  # one scale for the whole grid: 0..max
        assert norm.vmax == pytest.approx(float(snaps["entropy"].astype(np.float32).max()))
    width, _ = png_size(fig)
    assert width >= 600


def test_evolution_grid_subsamples_many_epochs_keeping_first_and_last():
    fig = evolution_grid(snapshots(epochs=12, n=1, size=8), "efm", "finetune", max_columns=4)
    titles = [ax.get_title() for ax in image_axes(fig)]
    assert len(titles) == 4 and titles[0] == "epoch 2" and titles[-1] == "epoch 24"


def test_difference_map_is_red_blue_centred_at_zero():
    snaps = snapshots(epochs=3, n=2)
    fig = difference_map(snaps, "efm")
    panels = image_axes(fig)
    assert len(panels) == 2
    image = panels[0].images[0]
    assert image.get_cmap().name == "RdBu_r"
    assert isinstance(image.norm, Normalize)
    assert image.norm.vmax > 0 and image.norm.vmin == -image.norm.vmax
    expected = (snaps["efm"][0, 0].astype(float) - snaps["efm"][-1, 0]) / 255
    np.testing.assert_allclose(image.get_array(), expected, atol=1e-6)
    bars = colourbars(fig)
    assert len(bars) == 1 and "start − end" in bars[0].get_ylabel()
    assert "epoch 2" in fig.get_suptitle() and "epoch 6" in fig.get_suptitle()
    width, _ = png_size(fig)
    assert width >= 600


@pytest.mark.parametrize("epochs", [0, 1])
def test_snapshot_figures_with_too_few_epochs_say_so(epochs):
    snaps = snapshots(epochs=epochs, n=2, size=8)
    grid = evolution_grid(snaps, "entropy", "baseline")
    diff = difference_map(snaps, "baseline")
    assert not diff.axes
    if epochs == 0:
        assert not grid.axes
        assert "no EFM snapshots were recorded" in texts(grid)
        assert "no EFM snapshots were recorded" in texts(diff)
    else:  # one epoch still makes a (one-column) evolution grid, but no difference
        assert len(image_axes(grid)) == 2
        assert "only one EFM snapshot" in texts(diff)
    assert png_size(diff)[0] >= 600


def test_evolution_grid_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        evolution_grid(snapshots(), "loss", "efm")  # type: ignore[arg-type]


def test_colourise_uses_the_palette_and_a_neutral_ignore_colour():
    labels = np.array([[0, 1], [3, IGNORE]], dtype=np.uint8)
    rgb = colourise(labels, CLASS_COLOURS, IGNORE)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 1]) == CLASS_COLOURS[1] and tuple(rgb[1, 0]) == CLASS_COLOURS[3]
    assert tuple(rgb[1, 1]) == (0, 0, 0)


def test_qualitative_grid_with_palette_and_class_legend():
    rng = np.random.default_rng(1)
    n = 2
    targets = rng.integers(0, 4, (n, 16, 16)).astype(np.uint8)
    targets[:, :2, :2] = IGNORE
    images = np.asarray(CLASS_COLOURS, dtype=np.uint8)[targets % 4]
    predictions = {s: targets % 4 for s in ("finetune", "baseline", "efm")}  # order is restored
    fig = qualitative(images, targets, predictions, CLASS_NAMES, CLASS_COLOURS, IGNORE)
    panels = image_axes(fig)
    assert len(panels) == n * 5
    titles = [ax.get_title().split("\n")[0] for ax in panels[:5]]
    assert titles == ["input", "ground truth", "Baseline", "+EFM", "+EFM fine-tuning"]
    assert "pixel acc. 1.000" in panels[2].get_title()
    gt = panels[1].images[0].get_array()
    assert tuple(gt[5, 5]) == CLASS_COLOURS[targets[0, 5, 5]] and tuple(gt[0, 0]) == (0, 0, 0)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [*CLASS_NAMES, "ignore"]
    assert fig.get_suptitle()
    width, _ = png_size(fig)
    assert width >= 600


def test_confusion_figure_is_row_normalised_and_annotated():
    confusion = np.array([[8, 2, 0, 0], [0, 5, 5, 0], [0, 0, 0, 0], [1, 0, 0, 3]])
    fig = confusion_figure(confusion, CLASS_NAMES, "baseline")
    ax = image_axes(fig)[0]
    rates = ax.images[0].get_array()
    np.testing.assert_allclose(rates.sum(axis=1), [1, 1, 0, 1])
    assert rates[0, 0] == pytest.approx(0.8)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("prediction", "ground truth")
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASS_NAMES
    assert len(ax.texts) == 16 and ax.texts[0].get_text() == "0.80"
    assert len(colourbars(fig)) == 1 and "Baseline" in ax.get_title()
    with pytest.raises(ValueError, match="C x C"):
        confusion_figure(np.zeros((2, 3)), CLASS_NAMES, "baseline")


def test_per_class_bars_group_one_bar_per_stage_without_tta():
    rows = [
        {"stage": s, "tta": tta, "class_name": c, "iou": 0.1 * (k + 1) + (0.5 if tta else 0)}
        for s in STAGES
        for tta in (False, True)
        for k, c in enumerate(CLASS_NAMES)
    ]
    fig = per_class_bars(pd.DataFrame(rows), metric="iou")
    ax = fig.axes[0]
    assert len(ax.patches) == len(STAGES) * len(CLASS_NAMES)
    assert max(p.get_height() for p in ax.patches) == pytest.approx(0.4)  # the no-TTA rows
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "Baseline",
        "+EFM",
        "+EFM fine-tuning",
    ]
    assert ax.get_ylabel() == "IoU" and "without TTA" in ax.get_title()
    assert png_size(fig)[0] >= 600
    assert not per_class_bars(pd.DataFrame(rows), metric="ece").axes  # text figure
