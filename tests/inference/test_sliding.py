"""Sliding-window inference: any size in, exactly that size out; agreement with whole-image
inference away from crop borders; zero overlap is plain tiling; blending weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from efm_seg.inference import blend_weights, sliding_window_probs, window_starts

RADIUS = 3  # the receptive field's radius of LocalNet: three 3x3 convolutions


class LocalNet(nn.Module):
    """A small fully convolutional net whose output at a pixel depends only on the input within
    RADIUS pixels: away from a crop's border, a crop predicts what the whole image does."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, classes, 3, padding=1),
        )

    def forward(self, x):
        return self.body(x)


def test_window_starts_cover_the_side_and_end_at_the_edge():
    assert window_starts(100, 32, 24) == [0, 24, 48, 68]
    assert window_starts(96, 32, 32) == [0, 32, 64]
    assert window_starts(20, 32, 24) == [0]


def test_blend_weights_fall_towards_the_edges_and_stay_positive():
    weights = blend_weights(16, 4)
    assert weights.shape == (16, 16) and (weights > 0).all()
    assert weights[8, 8] == 1 and weights[0, 0] < weights[1, 1] < weights[4, 4]
    assert torch.equal(weights, weights.flip(0)) and torch.equal(weights, weights.T)
    assert torch.equal(blend_weights(16, 0), torch.ones(16, 16))


@pytest.mark.parametrize(("height", "width"), [(101, 77), (20, 45), (64, 64)])
def test_any_size_in_gives_exactly_that_size_out(height, width):
    image = torch.randn(3, height, width)
    probs = sliding_window_probs(LocalNet(), image, window=32, overlap=8)
    assert probs.shape == (4, height, width)
    assert torch.allclose(probs.sum(0), torch.ones(height, width), atol=1e-5)


def test_agrees_with_whole_image_inference_away_from_crop_borders():
    model = LocalNet().eval()
    image = torch.randn(3, 100, 130)  # several times the window, not a multiple of it
    window, overlap = 32, 8
    probs = sliding_window_probs(model, image, window=window, overlap=overlap, batch_size=3)
    whole = model(image[None]).softmax(1)[0]
    # Pixels at least RADIUS from every border of every crop covering them (image borders are
    # borders of the whole image too, so they count as inside).
    inside = torch.ones(100, 130, dtype=torch.bool)
    for y in window_starts(100, window, window - overlap):
        for x in window_starts(130, window, window - overlap):
            crop = torch.zeros(100, 130, dtype=torch.bool)
            crop[y : y + window, x : x + window] = True
            safe = torch.zeros_like(crop)
            top, left = (y if y == 0 else y + RADIUS), (x if x == 0 else x + RADIUS)
            bottom = y + window if y + window == 100 else y + window - RADIUS
            right = x + window if x + window == 130 else x + window - RADIUS
            safe[top:bottom, left:right] = True
            inside &= ~crop | safe
    assert inside.float().mean() > 0.3
    assert torch.allclose(probs[:, inside], whole[:, inside], atol=1e-5)
    # Near crop borders the crops see less context: they differ somewhere (the check is real).
    assert not torch.allclose(probs, whole, atol=1e-5)


def test_zero_overlap_is_plain_tiling():
    model = LocalNet().eval()
    image = torch.randn(3, 64, 96)
    probs = sliding_window_probs(model, image, window=32, overlap=0, batch_size=4)
    for y in (0, 32):
        for x in (0, 32, 64):
            tile = model(image[None, :, y : y + 32, x : x + 32]).softmax(1)[0]
            assert torch.allclose(probs[:, y : y + 32, x : x + 32], tile, atol=1e-6)


def test_tta_averages_the_four_flips_of_each_crop():
    model = LocalNet().eval()
    image = torch.randn(3, 32, 32)
    with_tta = sliding_window_probs(model, image, window=32, overlap=0, tta=True)
    batch = image[None]
    expected = (
        model(batch).softmax(1)
        + model(batch.flip(-1)).softmax(1).flip(-1)
        + model(batch.flip(-2)).softmax(1).flip(-2)
        + model(batch.flip((-2, -1))).softmax(1).flip((-2, -1))
    )[0] / 4
    assert not torch.allclose(with_tta, model(batch).softmax(1)[0], atol=1e-4)
    assert torch.allclose(with_tta, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("window", "overlap", "message"),
    [
        (32, 32, r"overlap must be in \[0, window=32\)"),
        (32, 20, "more than half"),
        (0, 0, "window must be at least 1 pixel"),
    ],
)
def test_bad_windows_are_refused(window, overlap, message):
    with pytest.raises(ValueError, match=message):
        sliding_window_probs(LocalNet(), torch.randn(3, 40, 40), window=window, overlap=overlap)


def test_the_overlap_is_the_weighted_mean_of_the_crops_that_cover_it():
    """Two crops side by side, sharing 8 columns: each pixel there is the mean of the two crops'
    probabilities weighted by their blending weights, computed here by hand (uniform weights,
    a plain mean, would pass every other test)."""
    model = LocalNet()
    image = torch.randn(3, 32, 56)
    window, overlap = 32, 8
    probs = sliding_window_probs(model, image, window=window, overlap=overlap)
    with torch.no_grad():
        left = model(image[None, :, :, :32]).softmax(1)[0]
        right = model(image[None, :, :, 24:]).softmax(1)[0]
    # Within a crop, the weight of column c is the ramp's: (c+1)/(overlap+1) near its left edge,
    # (window-c)/(overlap+1) near its right edge, 1 inside; rows likewise (one crop per row).
    ramp = [min(1.0, (c + 1) / (overlap + 1), (window - c) / (overlap + 1)) for c in range(32)]
    for row in (0, 5, 16, 31):
        for column in range(24, 32):  # the shared columns
            w_left = ramp[row] * ramp[column]
            w_right = ramp[row] * ramp[column - 24]
            expected = (w_left * left[:, row, column] + w_right * right[:, row, column - 24]) / (
                w_left + w_right
            )
            torch.testing.assert_close(probs[:, row, column], expected)
