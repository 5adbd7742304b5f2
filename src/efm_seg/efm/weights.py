"""Pixel weights of the paper's section 2.2: boundary weight (eq. 8) and EFM weight (eqs. 7, 9).

Weights are loss multipliers, so they are always computed without gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from efm_seg.efm._checks import (
    check_ignore_index,
    check_labels,
    check_num_classes,
    check_number,
    check_odd_kernel,
)
from efm_seg.efm.defaults import DEFAULT_ALPHA_F, DEFAULT_BETA_F, DEFAULT_GAMMA, DEFAULT_KERNEL_SIZE

WeightForm = Literal["eq9", "eq7"]
FORMS: tuple[str, ...] = ("eq9", "eq7")


def _box_counts(one_hot: torch.Tensor, kernel_size: int, dtype: torch.dtype) -> torch.Tensor:
    """Per-channel counts of 1s in every ``k×k`` window ("same" size, zero padding).

    A separable box sum in integer arithmetic: ``k − 1`` shifted additions per axis on a ``dtype``
    (``uint8`` for a 3×3 window) tensor, i.e. 4 cheap passes for the default window. Integer
    counts are exact, which keeps W_b exactly 1 in uniform regions.
    """
    height, width = one_hot.shape[-2:]
    pad = kernel_size // 2
    padded = F.pad(one_hot.to(dtype), (pad, pad, pad, pad))
    rows = padded[..., 0:width].clone()
    for shift in range(1, kernel_size):
        rows += padded[..., shift : shift + width]
    counts = rows[..., 0:height, :].clone()
    for shift in range(1, kernel_size):
        counts += rows[..., shift : shift + height, :]
    return counts


def _count_dtype(kernel_size: int) -> torch.dtype:
    """Smallest integer dtype that holds ``Σ_c count_c² <= k⁴`` without overflow."""
    bound = kernel_size**4
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if bound <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def boundary_weight(
    target: torch.Tensor,
    num_classes: int,
    *,
    gamma: float = DEFAULT_GAMMA,
    kernel_size: int = DEFAULT_KERNEL_SIZE,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Boundary weight W_b of eq. 8: ``1 + γ·‖maxpool(Y) − avgpool(Y)‖₂``.

    ``Y`` is the one-hot ground truth ``(B, C, H, W)``; both pools use a ``kernel_size`` window
    with stride 1 and "same" size. In a window holding a single class every channel has
    ``max = avg``, so W_b is exactly 1 inside uniform regions; it is > 1 wherever the window
    reaches another class.

    **Norm over classes**: the Euclidean (L2) norm, the usual reading of ``‖·‖`` (and what
    ``torch.norm(·, dim=1)`` gives). With ``f_c`` the share of class ``c`` in the window,
    ``maxpool(Y_c) = [f_c > 0]`` and ``avgpool(Y_c) = f_c``, so the norm is
    ``sqrt(Σ_present (1 − f_c)²)``. On either side of a straight two-class edge a 3×3 window
    holds 6 + 3 pixels, giving ``sqrt((1/3)² + (2/3)²) = √5/3 ≈ 0.75`` (W_b ≈ 1.89 with
    γ = 1.2). With ``n`` classes in the window the norm is below ``√(n − 1)``, so
    ``1 <= W_b < 1 + γ·√(C − 1)``. (The L∞ norm would cap it at 1 but ignores how many classes
    meet; L1 is the constant ``n − 1`` across the whole band.)

    **Ignore pixels** (and the outside of the image) are "no data", not a class: their one-hot
    vector is all zeros and ``f_c`` is the share among the *valid* pixels of the window, so a region
    that meets only ignore pixels or the image border stays at exactly 1 — an ignore pixel next to
    a class never creates a boundary. W_b is set to 1 at ignore pixels themselves (they carry no
    loss anyway). Labels outside ``0..num_classes-1`` are treated the same way.

    Computed from exact integer window counts ``n_c`` (``n = Σ n_c`` valid pixels):
    ``‖·‖² = Σ_present (1 − n_c/n)² = n_present − 2 + Σ_c n_c² / n²``. The map depends only on the
    labels, so it may also be precomputed with the data.

    Args:
        target: Ground-truth labels ``(B, H, W)``, integer, in ``0..num_classes-1`` or
            ``ignore_index``.
        num_classes: Number of classes C.
        gamma: γ of eq. 8, ``>= 0``; 0 gives an all-ones map. Default 1.2 (the paper's).
        kernel_size: Odd pooling window. Default 3: the smallest neighbourhood, one pixel of band
            on each side of an edge.
        ignore_index: Label of pixels that do not count.

    Returns:
        ``(B, H, W)`` float32 map ``>= 1``, without gradient.

    Raises:
        ValueError: for a ``target`` that is not ``(B, H, W)`` integer, ``num_classes < 1``,
            ``gamma < 0`` or an even/non-positive ``kernel_size``.
    """
    target = check_labels(target)
    num_classes = check_num_classes(num_classes)
    gamma = check_number("gamma", gamma, low=0.0)
    kernel_size = check_odd_kernel("kernel_size", kernel_size)
    ignore_index = check_ignore_index(ignore_index)
    if gamma == 0.0 or kernel_size == 1:
        return torch.ones(target.shape, dtype=torch.float32, device=target.device)
    with torch.no_grad():
        classes = torch.arange(num_classes, device=target.device).view(1, -1, 1, 1)
        one_hot = target.unsqueeze(1) == classes  # ignore / out-of-range pixels: all False
        dtype = _count_dtype(kernel_size)
        counts = _box_counts(one_hot, kernel_size, dtype)  # n_c, exact
        valid_count = counts.sum(dim=1, dtype=dtype).float()  # n
        square_sum = counts.mul(counts).sum(dim=1, dtype=dtype).float()  # Σ n_c² (mul: faster)
        present = counts.ne(0).sum(dim=1, dtype=dtype).float()  # n_present
        norm_sq = square_sum.div_(valid_count.square().clamp_min_(1.0)).add_(present - 2.0)
        weight = norm_sq.clamp_min_(0.0).sqrt_().mul_(gamma).add_(1.0)
        if ignore_index is not None:
            weight = weight.masked_fill_(target == ignore_index, 1.0)
        return weight


def _check_form(form: object) -> str:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    return str(form)


def efm_factor(
    efm: torch.Tensor,
    *,
    alpha_f: float = DEFAULT_ALPHA_F,
    beta_f: float = DEFAULT_BETA_F,
    form: WeightForm = "eq9",
) -> torch.Tensor:
    """The EFM part of the pixel weight: ``1 + α_f·EFM^β_f`` (eq. 9) or ``(1 + α_f·EFM)^β_f``
    (eq. 7).

    ``efm`` is clamped to [0, 1] first (its range by construction; a negative value to a fractional
    power would be NaN).

    Args:
        efm: Fingerprint map ``(B, H, W)`` in [0, 1].
        alpha_f: Focus strength α_f, ``>= 0``.
        beta_f: Focus non-linearity β_f, ``> 0``.
        form: ``"eq9"`` or ``"eq7"``.

    Returns:
        ``efm``-shaped float32 (float64 for float64 input) factor in ``[1, 1 + α_f]`` (eq. 9) or
        ``[1, (1 + α_f)^β_f]`` (eq. 7), without gradient.

    Raises:
        ValueError: for ``alpha_f < 0``, ``beta_f <= 0`` or an unknown ``form``.
    """
    alpha_f = check_number("alpha_f", alpha_f, low=0.0)
    beta_f = check_number("beta_f", beta_f, low=0.0, low_open=True)
    form = _check_form(form)
    if not isinstance(efm, torch.Tensor) or not efm.is_floating_point():
        raise ValueError("efm must be a floating-point torch.Tensor")
    dtype = torch.float64 if efm.dtype == torch.float64 else torch.float32
    with torch.no_grad():
        e = efm.detach().to(dtype).clamp(0.0, 1.0)
        if form == "eq9":
            return e.pow(beta_f).mul_(alpha_f).add_(1.0)
        return e.mul(alpha_f).add_(1.0).pow_(beta_f)


def pixel_weights(
    efm: torch.Tensor,
    boundary: torch.Tensor,
    *,
    alpha_f: float = DEFAULT_ALPHA_F,
    beta_f: float = DEFAULT_BETA_F,
    form: WeightForm = "eq9",
) -> torch.Tensor:
    """Final pixel weight W of eq. 9: ``W_b · (1 + α_f·EFM^β_f)``.

    The paper states the EFM factor twice, differently: eq. 9 raises the EFM to ``β_f``
    (``form="eq9"``, the default, as eq. 9 is the one that enters eq. 10); eq. 7 raises the whole
    factor, ``W_b · (1 + α_f·EFM)^β_f`` (``form="eq7"``). Both are 1 where EFM = 0 and grow
    monotonically with it; eq. 7 reaches ``3^1.5 ≈ 5.2`` at EFM = 1, eq. 9 reaches 3.

    Args:
        efm: Fingerprint map ``(B, H, W)`` in [0, 1] (see :func:`fingerprint_map`).
        boundary: Boundary weight ``(B, H, W)`` (see :func:`boundary_weight`).
        alpha_f: Focus strength α_f, ``>= 0``. Default 2.0 (the paper's).
        beta_f: Focus non-linearity β_f, ``> 0``. Default 1.5 (the paper's).
        form: ``"eq9"`` (default) or ``"eq7"``.

    Returns:
        ``(B, H, W)`` float32 weights ``>= 1`` (for ``boundary >= 1``), without gradient.

    Raises:
        ValueError: for mismatched shapes, ``alpha_f < 0``, ``beta_f <= 0`` or an unknown
            ``form``.
    """
    if not isinstance(boundary, torch.Tensor) or not boundary.is_floating_point():
        raise ValueError("boundary must be a floating-point torch.Tensor")
    if not isinstance(efm, torch.Tensor) or efm.shape != boundary.shape or efm.ndim != 3:
        shape = tuple(efm.shape) if isinstance(efm, torch.Tensor) else type(efm).__name__
        raise ValueError(
            f"efm and boundary must both be (B, H, W) of the same shape, got efm {shape} "
            f"and boundary {tuple(boundary.shape)}"
        )
    factor = efm_factor(efm, alpha_f=alpha_f, beta_f=beta_f, form=form)
    return factor.mul_(boundary.detach().to(factor.dtype))
