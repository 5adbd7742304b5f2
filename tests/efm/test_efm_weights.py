"""Boundary weight (eq. 8) and pixel weights (eqs. 9 and 7)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from efm_seg.efm import boundary_weight, pixel_weights

IGNORE = 255


def blocky_target(
    batch: int = 2, classes: int = 4, size: int = 24, cell: int = 4, seed: int = 0
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, classes, (batch, size // cell, size // cell), generator=generator)
    return coarse.repeat_interleave(cell, dim=1).repeat_interleave(cell, dim=2)


def literal_eq8(
    target: torch.Tensor, classes: int, gamma: float, kernel: int, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 8 as written: max-pool and average-pool of the one-hot labels, L2 norm over classes.

    The average is over the window's valid in-image pixels (ignore pixels and padding excluded).
    """
    one_hot = F.one_hot(target.clamp(0, classes - 1), classes).permute(0, 3, 1, 2).double()
    if valid is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    one_hot = one_hot * valid.unsqueeze(1)
    pad = kernel // 2
    window_max = F.max_pool2d(one_hot, kernel, stride=1, padding=pad)
    class_sum = F.avg_pool2d(one_hot, kernel, stride=1, padding=pad, divisor_override=1)
    valid_sum = F.avg_pool2d(valid.unsqueeze(1).double(), kernel, 1, pad, divisor_override=1)
    window_avg = class_sum / valid_sum.clamp_min(1)
    return 1 + gamma * torch.linalg.vector_norm(window_max - window_avg, dim=1)


def test_boundary_weight_hand_computed() -> None:
    target = torch.tensor([[0, 0, 1, 1]] * 4).unsqueeze(0)
    weight = boundary_weight(target, 2, gamma=1.2, kernel_size=3)
    # columns 1 and 2: a 3×3 window holds 6 + 3 pixels (4 + 2 on the top and bottom rows);
    # either way ‖(1 − 2/3, 1 − 1/3)‖₂ = √5 / 3. Columns 0 and 3 only see their own class.
    edge = 1 + 1.2 * math.sqrt(5) / 3
    expected = torch.tensor([[1.0, edge, edge, 1.0]] * 4).unsqueeze(0)
    torch.testing.assert_close(weight, expected)
    assert weight.dtype == torch.float32


def test_boundary_weight_three_classes_hand_computed() -> None:
    target = torch.tensor([[[0, 1, 2]]])
    weight = boundary_weight(target, 3, gamma=1.0, kernel_size=3)
    # pixel 0 sees {0, 1}: ‖(1/2, 1/2)‖; pixel 1 sees {0, 1, 2}: ‖(2/3, 2/3, 2/3)‖
    expected = torch.tensor([[[1 + math.sqrt(0.5), 1 + math.sqrt(4 / 3), 1 + math.sqrt(0.5)]]])
    torch.testing.assert_close(weight, expected)


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_boundary_weight_matches_literal_eq8(kernel: int) -> None:
    target = blocky_target(classes=5, cell=3, seed=kernel)
    weight = boundary_weight(target, 5, gamma=1.2, kernel_size=kernel)
    torch.testing.assert_close(weight, literal_eq8(target, 5, 1.2, kernel).float())


def test_boundary_weight_matches_literal_eq8_with_ignore() -> None:
    target = blocky_target(classes=4, cell=3)
    target[:, 5:8] = IGNORE
    target[1, :, 10] = IGNORE
    valid = target != IGNORE
    weight = boundary_weight(target, 4, gamma=1.2, ignore_index=IGNORE)
    expected = torch.where(valid, literal_eq8(target, 4, 1.2, 3, valid), 1.0).float()
    torch.testing.assert_close(weight, expected)


def test_boundary_weight_exactly_one_inside_uniform_regions() -> None:
    target = blocky_target(classes=4, cell=6)
    weight = boundary_weight(target, 4)
    labels = target.unsqueeze(1).float()
    uniform = F.max_pool2d(labels, 3, 1, 1) == -F.max_pool2d(-labels, 3, 1, 1)
    uniform = uniform.squeeze(1)
    assert bool((weight[uniform] == 1.0).all())
    assert bool((weight[~uniform] > 1.0).all())
    assert int(uniform.sum()) > 0 and int((~uniform).sum()) > 0


def test_boundary_weight_ignore_next_to_a_class_is_no_boundary() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, :, :3] = IGNORE  # class 0 meets only no-data
    weight = boundary_weight(target, 3, ignore_index=IGNORE)
    assert torch.equal(weight, torch.ones_like(weight))
    target[:, :, 6:] = 1  # a real edge between class 0 and class 1
    weight = boundary_weight(target, 3, ignore_index=IGNORE)
    assert bool((weight[:, :, 3:5] == 1).all())
    assert bool((weight[:, :, 5:7] > 1).all())
    assert bool((weight[:, :, :3] == 1).all())  # ignore pixels themselves


def test_boundary_weight_properties() -> None:
    generator = torch.Generator().manual_seed(3)
    classes, gamma = 6, 1.2
    target = torch.randint(0, classes, (3, 17, 19), generator=generator)  # worst case: noise
    target[0, :4] = IGNORE
    weight = boundary_weight(target, classes, gamma=gamma, ignore_index=IGNORE)
    assert weight.shape == target.shape and weight.dtype == torch.float32
    assert bool(torch.isfinite(weight).all())
    assert bool((weight >= 1).all())
    assert bool((weight < 1 + gamma * math.sqrt(classes - 1)).all())
    assert not weight.requires_grad


def test_boundary_weight_off_switches() -> None:
    target = blocky_target()
    for weight in (
        boundary_weight(target, 4, gamma=0.0),
        boundary_weight(target, 4, kernel_size=1),
    ):
        assert torch.equal(weight, torch.ones(target.shape))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"gamma": -0.5}, "gamma"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_boundary_weight_rejects_bad_arguments(kwargs: dict[str, int], match: str) -> None:
    arguments = {"num_classes": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        boundary_weight(blocky_target(), **arguments)


def test_boundary_weight_rejects_bad_target() -> None:
    with pytest.raises(ValueError, match="target"):
        boundary_weight(blocky_target().float(), 4)
    with pytest.raises(ValueError, match="target"):
        boundary_weight(blocky_target().unsqueeze(1), 4)


# --- eqs. 9 and 7 -------------------------------------------------------------------------------


def test_pixel_weights_hand_computed() -> None:
    efm = torch.tensor([[[0.0, 0.25, 1.0]]])
    boundary = torch.tensor([[[1.0, 2.0, 1.5]]])
    # eq. 9: W_b·(1 + 2·EFM^1.5); 0.25^1.5 = 0.125
    eq9 = pixel_weights(efm, boundary, alpha_f=2.0, beta_f=1.5)
    torch.testing.assert_close(eq9, torch.tensor([[[1.0, 2.5, 4.5]]]))
    # eq. 7: W_b·(1 + 2·EFM)^1.5
    eq7 = pixel_weights(efm, boundary, alpha_f=2.0, beta_f=1.5, form="eq7")
    torch.testing.assert_close(eq7, torch.tensor([[[1.0, 2 * 1.5**1.5, 1.5 * 3**1.5]]]))


def test_pixel_weights_properties() -> None:
    generator = torch.Generator().manual_seed(0)
    efm = torch.rand(2, 9, 9, generator=generator, requires_grad=True)
    boundary = boundary_weight(blocky_target(size=9, cell=3), 4)
    weight = pixel_weights(efm, boundary)
    assert weight.shape == efm.shape and weight.dtype == torch.float32
    assert not weight.requires_grad
    assert bool((weight >= boundary).all()) and bool((weight <= 3 * boundary).all())
    # monotone in the EFM
    assert bool((pixel_weights(efm.detach() * 0.5, boundary) <= weight).all())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"form": "eq8"}, "form"),
        ({"alpha_f": -1.0}, "alpha_f"),
        ({"beta_f": 0.0}, "beta_f"),
    ],
)
def test_pixel_weights_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    efm = torch.rand(1, 4, 4)
    with pytest.raises(ValueError, match=match):
        pixel_weights(efm, torch.ones(1, 4, 4), **kwargs)


def test_pixel_weights_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="same shape"):
        pixel_weights(torch.rand(1, 4, 4), torch.ones(1, 4, 5))
