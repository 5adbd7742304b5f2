"""Flip TTA (eq. 13): one batched forward, exact inverse flips, averaged softmax."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from efm_seg.evaluation.tta import FLIPS, merge_tta, predict_probs, tta_variants


class CountingModel(nn.Module):
    """Wraps a model and records the batch size of every call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batch_sizes: list[int] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(images.shape[0])
        return self.model(images)


def conv(symmetric: bool) -> nn.Conv2d:
    """A 3 → 4 channel 3×3 conv; ``symmetric``: kernels mirror-symmetric along both axes, which
    (with zero padding) makes the layer commute with horizontal and vertical flips."""
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, kernel_size=3, padding=1)
    if symmetric:
        with torch.no_grad():
            weight = layer.weight
            weight.copy_((weight + weight.flip(-1)) / 2)
            weight.copy_((weight + weight.flip(-2)) / 2)
    return layer


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 6, 7, generator=torch.Generator().manual_seed(1))  # H ≠ W


def test_flips_are_identity_horizontal_vertical_both():
    assert FLIPS == ((), (-1,), (-2,), (-2, -1))


def test_variants_and_merge_are_exact_inverses(images):
    variants = tta_variants(images)
    assert variants.shape == (8, 3, 6, 7)
    torch.testing.assert_close(variants[2:4], images.flip(-1), rtol=0, atol=0)
    torch.testing.assert_close(variants[4:6], images.flip(-2), rtol=0, atol=0)
    torch.testing.assert_close(variants[6:8], images.flip(-2, -1), rtol=0, atol=0)
    # Mapping every variant back recovers the input, so the mean of the four is the input.
    torch.testing.assert_close(merge_tta(variants, 2), images, rtol=0, atol=1e-7)


def test_flip_equivariant_model_gives_the_plain_prediction(images):
    model = CountingModel(conv(symmetric=True)).eval()
    with torch.no_grad():
        plain = predict_probs(model, images, tta=False)
        tta = predict_probs(model, images, tta=True)
    assert model.batch_sizes == [2, 8]  # the TTA pass is a single forward of 4·B
    torch.testing.assert_close(tta, plain, rtol=0, atol=1e-6)
    assert tta.shape == (2, 4, 6, 7)
    assert tta.dtype == torch.float32
    torch.testing.assert_close(tta.sum(1), torch.ones(2, 6, 7), rtol=0, atol=1e-6)


def test_non_equivariant_model_differs(images):
    model = CountingModel(conv(symmetric=False)).eval()
    with torch.no_grad():
        plain = predict_probs(model, images, tta=False)
        tta = predict_probs(model, images, tta=True)
        flipped_runs = [model(images.flip(dims) if dims else images).softmax(1) for dims in FLIPS]
    assert model.batch_sizes[:2] == [2, 8]
    assert (tta - plain).abs().max() > 1e-3
    torch.testing.assert_close(tta.sum(1), torch.ones(2, 6, 7), rtol=0, atol=1e-6)
    # Eq. 13 written out with four separate passes agrees with the batched one.
    expected = (
        sum(
            (run.flip(dims) if dims else run) for run, dims in zip(flipped_runs, FLIPS, strict=True)
        )
        / 4
    )
    torch.testing.assert_close(tta, expected, rtol=0, atol=1e-6)


def test_softmax_in_float32_under_autocast(images):
    model = conv(symmetric=False).eval()
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        probs = predict_probs(model, images, tta=True)
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 6, 7), rtol=0, atol=1e-5)


def test_bad_shapes_raise(images):
    with pytest.raises(ValueError, match="B, C, H, W"):
        predict_probs(conv(symmetric=True), images[0], tta=True)
    with pytest.raises(ValueError, match="B=3"):
        merge_tta(torch.zeros(8, 2, 4, 4), 3)
