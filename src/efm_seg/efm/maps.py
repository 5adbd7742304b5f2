"""Error, entropy and fingerprint maps: the EFM of the paper's section 2.2 (eqs. 2-5).

All functions take a batch: ``probs`` is ``(B, C, H, W)`` (the softmax of eq. 1) and ``target`` is
``(B, H, W)`` integer labels in ``0..C-1`` (plus ``ignore_index``). They are vectorised over the
batch, work on any device, and return ``float32`` maps (``float64`` for ``float64`` input) of shape
``(B, H, W)``.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms.v2.functional import gaussian_blur

from efm_seg.efm._checks import (
    check_ignore_index,
    check_number,
    check_probs,
    check_probs_target,
    work_dtype,
)
from efm_seg.efm.defaults import DEFAULT_ALPHA, DEFAULT_SIGMA

_TRUNCATE = 3.0
"""The Gaussian kernel is cut at ±3σ (the usual 3σ rule: 99.7 % of its mass)."""


def error_map(
    probs: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None
) -> torch.Tensor:
    """Error map E of eq. 2: 1 where ``argmax_c P_c ≠ Y``, 0 elsewhere.

    Logits may be passed instead of probabilities: the argmax is the same.

    Args:
        probs: Class probabilities ``(B, C, H, W)``, floating point.
        target: Ground-truth labels ``(B, H, W)``, integer.
        ignore_index: Label of pixels that do not count; E is 0 there.

    Returns:
        ``(B, H, W)`` float map of 0s and 1s, without gradient.

    Raises:
        ValueError: if the shapes or dtypes do not match ``(B, C, H, W)`` / ``(B, H, W)``.
    """
    target = check_probs_target(probs, target)
    ignore_index = check_ignore_index(ignore_index)
    wrong = _argmax_differs(probs.detach(), target)
    if ignore_index is not None:
        wrong &= target != ignore_index
    return wrong.to(work_dtype(probs.dtype))


def _argmax_differs(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``probs.argmax(dim=1) != target`` (first maximal index on ties), without a full argmax.

    An index reduction over the class axis is many times slower on the CPU than a max; the
    target's own probability against the maximum gives the same answer wherever one class alone
    reaches the maximum. Pixels where several do (rare, but every pixel of a network whose
    outputs are all equal) are settled by an argmax over those pixels only.
    """
    num_classes = probs.shape[1]
    best = probs.amax(dim=1, keepdim=True)
    safe = target.clamp(0, num_classes - 1)
    at_target = probs.gather(1, safe.unsqueeze(1))
    wrong = (at_target < best).squeeze(1)
    tied = probs.eq(best).sum(dim=1, dtype=torch.uint8) > 1
    if tied.any():
        where = tied.nonzero(as_tuple=True)
        wrong[where] = probs.movedim(1, -1)[where].argmax(dim=-1) != safe[where]
    return wrong | (safe != target)  # a label outside 0..C-1 is never predicted


def entropy_map(probs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Entropy map H of eq. 3: ``H = -Σ_c P_c · log(P_c + ε)``.

    ``0 · log(0 + ε)`` is 0 (with ``eps=0``, ``torch.special.xlogy`` makes it so). The result
    is clamped at 0 from below (``log(1 + ε) > 0`` would otherwise give ``-1e-8`` for a one-hot
    prediction); its upper bound is ``log C``, reached by uniform probabilities. The function is
    differentiable (it is not detached); :func:`fingerprint_map` detaches its input.

    Args:
        probs: Class probabilities ``(B, C, H, W)``, floating point.
        eps: The ε of eq. 3, ``>= 0``.

    Returns:
        ``(B, H, W)`` entropy in nats.

    Raises:
        ValueError: if ``probs`` is not ``(B, C, H, W)`` floating point or ``eps < 0``.
    """
    check_probs(probs)
    eps = check_number("eps", eps, low=0.0)
    p = probs.to(work_dtype(probs.dtype))
    if eps == 0.0:
        plogp = torch.special.xlogy(p, p)
    elif torch.is_grad_enabled() and p.requires_grad:
        plogp = p * torch.log(p + eps)
    else:  # no autograd: one (B, C, H, W) temporary instead of three
        plogp = torch.add(p, eps).log_().mul_(p)
    return plogp.sum(dim=1).neg().clamp_min(0.0)


def _gaussian_smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Eq. 5's ``G_σ * ·`` on each ``(H, W)`` plane of ``maps`` ``(B, K, H, W)``.

    Uses torchvision's Gaussian blur (reflect padding) as two 1-D passes — a ``k×1`` then a
    ``1×k`` kernel — so the cost is ``2k`` rather than ``k²`` multiply-adds per pixel. The kernel
    spans ±3σ, shortened where an image side is too small for reflect padding.
    """
    if sigma == 0.0:
        return maps
    shape = maps.shape
    height, width = shape[-2:]
    size = 2 * math.ceil(_TRUNCATE * sigma) + 1
    kx = min(size, 2 * width - 1)
    ky = min(size, 2 * height - 1)
    # All planes as the channels of one image: a single depthwise convolution over B·K channels,
    # several times faster on CPU than a batch of B images of K channels.
    planes = maps.reshape(-1, height, width)
    if kx > 1:
        planes = gaussian_blur(planes, kernel_size=[kx, 1], sigma=[sigma, sigma])
    if ky > 1:
        planes = gaussian_blur(planes, kernel_size=[1, ky], sigma=[sigma, sigma])
    return planes.reshape(shape)


def _minmax_normalise(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Min-max normalise every ``(H, W)`` plane of ``x`` to [0, 1].

    The minimum and maximum are taken over ``valid`` pixels only (all if ``None``); pixels outside
    ``valid`` are set to 0. A plane whose range is zero — up to a few ulps of rounding left by the
    blur — has no contrast to express and becomes all 0 (never NaN, never amplified noise).
    """
    if valid is None:
        low = x.amin(dim=(-2, -1), keepdim=True)
        high = x.amax(dim=(-2, -1), keepdim=True)
    else:
        low = torch.where(valid, x, math.inf).amin(dim=(-2, -1), keepdim=True)
        high = torch.where(valid, x, -math.inf).amax(dim=(-2, -1), keepdim=True)
    span = high - low
    tolerance = 64 * torch.finfo(x.dtype).eps * torch.maximum(low.abs(), high.abs())
    has_range = span > tolerance  # False for constant planes and for planes without valid pixels
    # Dividing (not multiplying by 1/span) maps the maximum to exactly 1; x / inf = 0.
    out = (x - torch.where(has_range, low, 0.0)) / torch.where(has_range, span, math.inf)
    out = out.clamp_(0.0, 1.0)
    if valid is not None:
        out = torch.where(valid, out, 0.0)
    return out


def fingerprint_map(
    probs: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = DEFAULT_ALPHA,
    sigma: float = DEFAULT_SIGMA,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Error Fingerprint Map of eqs. 4-5: ``EFM = norm(α·Ē + (1 − α)·H̄)``.

    Steps, each per image and vectorised over the batch:

    1. E (eq. 2) and H (eq. 3) from the detached ``probs``;
    2. each smoothed by a Gaussian of standard deviation ``sigma`` px (eq. 5; ``0`` = none);
    3. each min-max normalised to [0, 1] → Ē, H̄ (a constant component, e.g. an image without
       errors, or with only errors, becomes 0 — it marks no pixel as harder than another);
    4. combined as ``α·Ē + (1 − α)·H̄`` (eq. 4) and min-max normalised again to [0, 1], as the
       paper re-normalises the final focus map.

    Ignore pixels: E is 0 there, the min/max of steps 3-4 are taken over valid pixels only (so a
    no-data area cannot set the scale), and the EFM is 0 there. The entropy of ignore pixels still
    enters the blur of step 2 — it is the model's real output at those places.

    Args:
        probs: Class probabilities ``(B, C, H, W)``; detached here, so the EFM never carries
            gradient.
        target: Ground-truth labels ``(B, H, W)``, integer.
        alpha: α of eq. 4 in [0, 1]: weight of the error component against the entropy one.
            Default 0.6, the paper's value.
        sigma: Standard deviation of the Gaussian of eq. 5, in pixels, ``>= 0``. Default 2.0: it
            removes single-pixel speckle but keeps the focus local (half-maximum width ≈ 5 px).
        ignore_index: Label of pixels that do not count.

    Returns:
        ``(B, H, W)`` map in [0, 1], float32 (float64 for float64 ``probs``), without gradient.

    Raises:
        ValueError: if ``alpha`` is outside [0, 1], ``sigma < 0``, or the shapes do not match.
    """
    target = check_probs_target(probs, target)
    alpha = check_number("alpha", alpha, low=0.0, high=1.0)
    sigma = check_number("sigma", sigma, low=0.0)
    ignore_index = check_ignore_index(ignore_index)
    with torch.no_grad():
        probs = probs.detach()
        valid = None if ignore_index is None else (target != ignore_index).unsqueeze(1)
        components = torch.stack(
            (error_map(probs, target, ignore_index), entropy_map(probs)), dim=1
        )  # (B, 2, H, W): E and H
        components = _minmax_normalise(_gaussian_smooth(components, sigma), valid)
        efm = alpha * components[:, 0:1] + (1.0 - alpha) * components[:, 1:2]
        return _minmax_normalise(efm, valid).squeeze(1)
