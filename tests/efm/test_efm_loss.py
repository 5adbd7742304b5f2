"""EFMLoss (eq. 10), its top-k reduction (eq. 11) and the baseline it reduces to (eq. 6)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import DiceLoss

from efm_seg.efm import (
    EFMLoss,
    boundary_weight,
    fingerprint_map,
    pixel_weights,
    topk_mean,
)

IGNORE = 255
CLASSES = 5


def case(
    batch: int = 3, size: int = 16, seed: int = 0, ignore: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(batch, CLASSES, size, size, generator=generator)
    coarse = torch.randint(0, CLASSES, (batch, size // 4, size // 4), generator=generator)
    target = coarse.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)
    if ignore:  # a different number of ignore pixels in every image
        target[0, :2] = IGNORE
        target[1, :, :5] = IGNORE
        target[2, 3, 3] = IGNORE
    return logits, target


def online_efm(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return fingerprint_map(logits.detach().softmax(1), target, ignore_index=IGNORE)


def ce_term(loss: EFMLoss, logits: torch.Tensor, target: torch.Tensor, efm=None) -> float:
    return float(loss.components(logits, target, efm)["ce"])


# --- eq. 6: the baseline ------------------------------------------------------------------------


@pytest.mark.parametrize("ignore", [False, True])
def test_baseline_equals_ce_plus_dice(ignore: bool) -> None:
    logits, target = case(ignore=ignore)
    ignore_index = IGNORE if ignore else None
    loss = EFMLoss(
        CLASSES,
        gamma=0,
        topk_ratio=1.0,
        lambda_ce=0.7,
        lambda_dice=1.3,
        label_smoothing=0.05,
        ignore_index=ignore_index,
    )
    ce = F.cross_entropy(
        logits, target, label_smoothing=0.05, ignore_index=IGNORE if ignore else -100
    )
    dice = DiceLoss(mode="multiclass", from_logits=True, ignore_index=ignore_index)(logits, target)
    torch.testing.assert_close(loss(logits, target), 0.7 * ce + 1.3 * dice)
    # One log-softmax shared by both terms: the same gradient as the two computed apart.
    ours, theirs = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    loss(ours, target).backward()
    reference = F.cross_entropy(
        theirs, target, label_smoothing=0.05, ignore_index=IGNORE if ignore else -100
    )
    dice_loss = DiceLoss(mode="multiclass", from_logits=True, ignore_index=ignore_index)
    (0.7 * reference + 1.3 * dice_loss(theirs, target)).backward()
    torch.testing.assert_close(ours.grad, theirs.grad)


def test_default_lambdas_and_label_smoothing() -> None:
    logits, target = case()
    loss = EFMLoss(CLASSES, gamma=0, topk_ratio=1.0)
    expected = F.cross_entropy(logits, target, label_smoothing=0.05)
    expected = expected + DiceLoss(mode="multiclass")(logits, target)
    torch.testing.assert_close(loss(logits, target), expected)


# --- eq. 10: weights ----------------------------------------------------------------------------


def test_hand_computed_weighted_topk() -> None:
    logits = torch.zeros(1, 2, 1, 4)  # uniform: CE = ln 2 at every pixel, smoothing or not
    target = torch.tensor([[[0, 1, 0, 1]]])
    efm = torch.tensor([[[0.0, 1.0, 0.25, 0.0]]])
    loss = EFMLoss(2, gamma=0, lambda_dice=0, topk_ratio=0.5, alpha_f=2.0, beta_f=1.5)
    # W = 1 + 2·EFM^1.5 = [1, 3, 1.25, 1]; top 50 % = {3, 1.25}
    torch.testing.assert_close(loss(logits, target, efm), torch.tensor(2.125 * math.log(2)))
    eq7 = EFMLoss(2, gamma=0, lambda_dice=0, topk_ratio=1.0, form="eq7")
    expected = (1 + 3**1.5 + 1.5**1.5 + 1) / 4 * math.log(2)  # W = (1 + 2·EFM)^1.5
    torch.testing.assert_close(eq7(logits, target, efm), torch.tensor(expected))


def test_weights_are_the_plain_mean_of_w_times_ce() -> None:
    logits, target = case(ignore=True)
    efm = online_efm(logits, target)
    loss = EFMLoss(CLASSES, topk_ratio=1.0, lambda_dice=0, ignore_index=IGNORE)
    weight = pixel_weights(efm, boundary_weight(target, CLASSES, ignore_index=IGNORE))
    ce = F.cross_entropy(
        logits, target, reduction="none", label_smoothing=0.05, ignore_index=IGNORE
    )
    valid = target != IGNORE
    expected = (weight * ce)[valid].sum() / valid.sum()  # (1/N) Σ W·CE, N = valid pixels
    torch.testing.assert_close(loss(logits, target, efm), expected)
    torch.testing.assert_close(loss.weight_map(target, efm), weight)


def test_constant_efm_scales_the_ce_term() -> None:
    logits, target = case()
    base = EFMLoss(CLASSES, gamma=0, topk_ratio=1.0)
    with_efm = EFMLoss(CLASSES, gamma=0, topk_ratio=1.0, alpha_f=2.0, beta_f=1.5)
    efm = torch.full(target.shape, 0.64)
    factor = 1 + 2.0 * 0.64**1.5
    expected = factor * ce_term(base, logits, target)
    assert ce_term(with_efm, logits, target, efm) == pytest.approx(expected, rel=1e-6)


# --- eq. 11: top-k ------------------------------------------------------------------------------


def reference_topk(values: torch.Tensor, valid: torch.Tensor, ratio: float) -> float:
    """Per-image top-k means, weighted by the images' valid-pixel counts, by plain Python."""
    total, weighted = 0, 0.0
    for image_values, image_valid in zip(values, valid, strict=True):
        kept = sorted(image_values[image_valid].tolist(), reverse=True)
        k = math.ceil(ratio * len(kept))
        if k:
            weighted += len(kept) * sum(kept[:k]) / k
        total += len(kept)
    return weighted / max(total, 1)


@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.3, 0.01])
def test_topk_mean_matches_reference(ratio: float) -> None:
    generator = torch.Generator().manual_seed(1)
    values = torch.rand(3, 7, 9, generator=generator)
    valid = torch.rand(3, 7, 9, generator=generator) > 0.3
    valid[2] = False  # an image without valid pixels
    result = topk_mean(values, ratio, valid)  # values at invalid pixels must not count
    assert float(result) == pytest.approx(reference_topk(values, valid, ratio), rel=1e-5)
    all_valid = torch.ones_like(valid)
    expected = reference_topk(values, all_valid, ratio)
    assert float(topk_mean(values, ratio)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("ignore", [False, True])
def test_lower_topk_ratio_never_lowers_the_ce_term(ignore: bool) -> None:
    logits, target = case(ignore=ignore)
    efm = online_efm(logits, target)
    ignore_index = IGNORE if ignore else None
    terms = [
        ce_term(EFMLoss(CLASSES, topk_ratio=ratio, ignore_index=ignore_index), logits, target, efm)
        for ratio in (1.0, 0.9, 0.5, 0.25, 0.1, 0.01)
    ]
    assert all(lower <= higher for lower, higher in itertools.pairwise(terms))
    assert terms[-1] > terms[0]


# --- ignore pixels, gradients, precision --------------------------------------------------------


def test_ignore_pixels_get_zero_loss_and_do_not_matter() -> None:
    logits, target = case(ignore=True)
    efm = online_efm(logits, target)
    loss = EFMLoss(CLASSES, ignore_index=IGNORE)
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    changed = torch.where(ignored, 50 * torch.randn_like(logits), logits)
    torch.testing.assert_close(loss(changed, target, efm), loss(logits, target, efm))
    logits.requires_grad_(True)
    loss(logits, target, efm).backward()
    assert bool((logits.grad[ignored] == 0).all())
    assert bool((logits.grad[~ignored] != 0).any())


def test_all_ignore_batch_gives_zero() -> None:
    logits, _ = case()
    target = torch.full((3, 16, 16), IGNORE)
    loss = EFMLoss(CLASSES, ignore_index=IGNORE)
    value = loss(logits, target, torch.zeros(3, 16, 16))
    assert float(value) == 0.0


def test_gradients_reach_the_logits_only() -> None:
    logits, target = case(ignore=True)
    logits.requires_grad_(True)
    efm = online_efm(logits, target).requires_grad_(True)
    loss = EFMLoss(CLASSES, ignore_index=IGNORE)
    value = loss(logits, target, efm)
    value.backward()
    assert efm.grad is None
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())
    assert not loss.weight_map(target, efm).requires_grad
    assert list(loss.parameters()) == []


@pytest.mark.parametrize("kind", ["all_correct", "all_wrong", "uniform"])
def test_finite_for_extreme_predictions(kind: str) -> None:
    _, target = case()
    one_hot = F.one_hot(target, CLASSES).permute(0, 3, 1, 2).float()
    if kind == "all_correct":
        logits = 30 * one_hot
    elif kind == "all_wrong":
        logits = 30 * one_hot.roll(1, dims=1)
    else:
        logits = torch.zeros_like(one_hot)
    logits.requires_grad_(True)
    efm = online_efm(logits, target)
    assert bool(torch.isfinite(efm).all())
    value = EFMLoss(CLASSES)(logits, target, efm)
    value.backward()
    assert bool(torch.isfinite(value)) and bool(torch.isfinite(logits.grad).all())


def test_bf16_autocast_on_cpu_gives_a_finite_float32_loss() -> None:
    _, target = case()
    conv = torch.nn.Conv2d(3, CLASSES, 3, padding=1)
    images = torch.randn(3, 3, 16, 16)
    loss = EFMLoss(CLASSES)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(images)
        assert logits.dtype == torch.bfloat16
        efm = fingerprint_map(logits.detach().float().softmax(1), target)
        value = loss(logits, target, efm)
    assert value.dtype == torch.float32 and bool(torch.isfinite(value))
    value.backward()
    assert conv.weight.grad is not None and bool(torch.isfinite(conv.weight.grad).all())
    reference = loss(logits.detach().float(), target, efm)
    torch.testing.assert_close(value.detach(), reference)


def test_components_and_uint8_labels() -> None:
    logits, target = case()
    loss = EFMLoss(CLASSES, lambda_ce=0.5, lambda_dice=2.0)
    parts = loss.components(logits, target)
    torch.testing.assert_close(parts["loss"], 0.5 * parts["ce"] + 2.0 * parts["dice"])
    torch.testing.assert_close(loss(logits, target.to(torch.uint8)), parts["loss"])


# --- argument checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"topk_ratio": 0.0}, "topk_ratio"),
        ({"topk_ratio": 1.5}, "topk_ratio"),
        ({"form": "eq10"}, "form"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"lambda_ce": -1.0}, "lambda_ce"),
        ({"lambda_dice": -1.0}, "lambda_dice"),
        ({"gamma": -1.0}, "gamma"),
        ({"alpha_f": -1.0}, "alpha_f"),
        ({"beta_f": 0.0}, "beta_f"),
        ({"kernel_size": 2}, "kernel_size"),
        ({"ignore_index": "255"}, "ignore_index"),
    ],
)
def test_loss_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EFMLoss(CLASSES, **kwargs)


def test_loss_rejects_bad_inputs() -> None:
    logits, target = case()
    loss = EFMLoss(CLASSES)
    with pytest.raises(ValueError, match="num_classes"):
        EFMLoss(CLASSES + 1)(logits, target)
    with pytest.raises(ValueError, match="shape mismatch"):
        loss(logits, target[:, :8])
    with pytest.raises(ValueError, match="efm"):
        loss(logits, target, torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="logits"):
        loss(logits[0], target)
    with pytest.raises(ValueError, match="target"):
        loss(logits, target.float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loss_on_cuda_matches_cpu() -> None:
    logits, target = case(ignore=True)
    efm = online_efm(logits, target)
    loss = EFMLoss(CLASSES, ignore_index=IGNORE)
    on_gpu = loss(logits.cuda(), target.cuda(), efm.cuda())
    torch.testing.assert_close(on_gpu.cpu(), loss(logits, target, efm), atol=1e-5, rtol=1e-5)
