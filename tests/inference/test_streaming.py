"""Streamed labelling: the whole-image sliding window's labels, block by block, on every scene
geometry; nodata crops skipped as a hand-computed reference does; reads never wider than a crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from efm_seg.inference.sliding import blend_weights, sliding_window_probs, window_starts
from efm_seg.inference.streaming import label_blocks, window_count


class ContextNet(nn.Module):
    """Logits that depend on the whole crop (its mean feature is added everywhere): a crop
    placed or padded differently from the whole-image inference changes the labels."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.local = nn.Conv2d(3, classes, 3, padding=1)
        self.context = nn.Conv2d(3, classes, 1)

    def forward(self, x):
        return self.local(x) + 4 * self.context(x).mean(dim=(2, 3), keepdim=True)


def streamed(image, valid=None, *, reads=None, **settings):
    """Labels and valid pixels of ``image`` (C, H, W) through :func:`label_blocks`."""
    _, height, width = image.shape

    def read(top, bottom, left, right):
        if reads is not None:
            reads.append((top, bottom, left, right))
        block = valid[top:bottom, left:right] if valid is not None else None
        return image[:, top:bottom, left:right], block

    labels = np.full((height, width), -1, dtype=np.int64)
    covered = np.zeros((height, width), dtype=bool)
    for block in label_blocks(read, height, width, ContextNet().eval(), **settings):
        assert block.labels.dtype == np.int16 and block.labels.shape == block.valid.shape
        where = np.s_[
            block.top : block.top + block.labels.shape[0],
            block.left : block.left + block.labels.shape[1],
        ]
        assert (labels[where] == -1).all()  # every pixel given once
        labels[where], covered[where] = block.labels, block.valid
    assert (labels >= 0).all()
    return labels, covered


@pytest.mark.parametrize(
    ("height", "width", "window", "overlap", "batch_size", "tta"),
    [
        (170, 130, 64, 16, 3, False),  # both sides end in a shifted crop
        (45, 200, 64, 16, 2, False),  # shorter than the window: padded rows
        (200, 40, 64, 32, 4, True),  # narrower than the window, overlap half of it, TTA
        (64, 64, 64, 0, 1, False),  # one crop
        (150, 310, 32, 8, 1, False),  # many crops a row, one a batch
    ],
)
def test_streamed_labels_are_the_whole_image_sliding_windows(
    height, width, window, overlap, batch_size, tta
):
    image = torch.rand(3, height, width)
    settings = {"window": window, "overlap": overlap, "batch_size": batch_size, "tta": tta}
    labels, covered = streamed(image, **settings)
    probs = sliding_window_probs(ContextNet().eval(), image, **settings)
    np.testing.assert_array_equal(labels, probs.argmax(0).numpy())
    assert covered.all()


def reference_with_nodata(image, valid, window, overlap):
    """The weighted mean over the crops holding any data, crop by crop (nothing streamed)."""
    model = ContextNet().eval()
    _, height, width = image.shape
    weights = blend_weights(window, overlap)
    total, weight_sum = torch.zeros(5, height, width), torch.zeros(height, width)
    stride = window - overlap
    for y in window_starts(height, window, stride):
        for x in window_starts(width, window, stride):
            if not valid[y : y + window, x : x + window].any():
                continue
            with torch.no_grad():
                crop = model(image[None, :, y : y + window, x : x + window])[0].softmax(0)
            total[:, y : y + window, x : x + window] += crop * weights
            weight_sum[y : y + window, x : x + window] += weights
    labels = (total / weight_sum.clamp_min(1e-12)).argmax(0).numpy()
    return labels, (weight_sum > 0).numpy() & valid


@pytest.mark.parametrize("batch_size", [1, 4])
def test_nodata_crops_are_skipped_and_their_pixels_left_unlabelled(batch_size):
    """Data in a few far-apart patches: most crops are empty, so a batch's crops lie far apart
    (a batch is predicted early rather than holding every column between them)."""
    height, width, window, overlap = 96, 400, 32, 8
    image = torch.rand(3, height, width)
    valid = np.zeros((height, width), dtype=bool)
    valid[5:30, 10:20] = valid[40:90, 150:160] = valid[:, 370:] = valid[60, 250] = True
    labels, covered = streamed(image, valid, window=window, overlap=overlap, batch_size=batch_size)
    expected, expected_valid = reference_with_nodata(image, valid, window, overlap)
    np.testing.assert_array_equal(covered, expected_valid)
    np.testing.assert_array_equal(labels[covered], expected[covered])
    assert not covered[:, 40:120].any()  # whole crops of nodata: never predicted


def test_reads_are_one_crop_at_most_and_progress_counts_every_window():
    height, width, window, overlap = 150, 500, 32, 8
    reads, done = [], []
    streamed(
        torch.rand(3, height, width), window=window, overlap=overlap, batch_size=3,
        reads=reads, progress=done.append,
    )  # fmt: skip
    assert max(bottom - top for top, bottom, _, _ in reads) <= window
    assert max(right - left for _, _, left, right in reads) <= window
    seen = np.zeros((height, width), dtype=bool)
    for top, bottom, left, right in reads:
        seen[top:bottom, left:right] = True
    assert seen.all()
    assert sum(done) == window_count(height, width, window, overlap) == len(reads)


def streamed_confidence(image, **settings):
    """The confidence of every pixel of ``image`` through :func:`label_blocks`."""
    _, height, width = image.shape
    confidence = np.full((height, width), np.nan, dtype=np.float32)
    for block in label_blocks(
        lambda t, b, left, r: (image[:, t:b, left:r], None), height, width,
        ContextNet().eval(), **settings,
    ):  # fmt: skip
        assert block.confidence.dtype == np.float32
        rows, columns = block.labels.shape
        confidence[block.top : block.top + rows, block.left : block.left + columns] = (
            block.confidence
        )
    return confidence


@pytest.mark.parametrize("temperature", [1.0, 2.5, 0.5])
def test_confidence_is_the_temperature_scaled_top_probability_of_the_blend(temperature):
    image = torch.rand(3, 150, 130)
    settings = {"window": 64, "overlap": 16, "batch_size": 3}
    confidence = streamed_confidence(image, temperature=temperature, **settings)
    probs = sliding_window_probs(ContextNet().eval(), image, **settings).double()
    scaled = (probs.log() / temperature).softmax(0).amax(0).numpy()
    np.testing.assert_allclose(confidence, scaled, rtol=1e-5, atol=1e-6)
    if temperature == 1.0:  # the blend's own top probability
        np.testing.assert_allclose(confidence, probs.amax(0).numpy(), rtol=1e-5, atol=1e-6)


def test_one_crop_without_tta_is_the_models_calibrated_softmax():
    image = torch.rand(3, 64, 64)
    confidence = streamed_confidence(image, window=64, overlap=0, temperature=3.0)
    with torch.no_grad():
        logits = ContextNet().eval()(image[None])[0]
    expected = (logits / 3.0).softmax(0).amax(0).numpy()
    np.testing.assert_allclose(confidence, expected, rtol=1e-5, atol=1e-6)


def test_no_confidence_unless_asked_and_a_bad_temperature_is_refused():
    image = torch.rand(3, 64, 64)
    blocks = list(
        label_blocks(lambda t, b, left, r: (image[:, t:b, left:r], None), 64, 64,
                     ContextNet().eval(), window=64, overlap=0)
    )  # fmt: skip
    assert all(block.confidence is None for block in blocks)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        next(label_blocks(lambda *a: None, 64, 64, ContextNet(), window=64, overlap=0,
                          temperature=0.0))  # fmt: skip
