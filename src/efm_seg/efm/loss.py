"""The EFM training objective L_total of eq. 10, with the top-k selection of eq. 11."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import DiceLoss
from torch import nn

from efm_seg.efm._checks import (
    check_ignore_index,
    check_labels,
    check_num_classes,
    check_number,
    check_odd_kernel,
)
from efm_seg.efm.defaults import (
    DEFAULT_LABEL_SMOOTHING,
    DEFAULT_LAMBDA_CE,
    DEFAULT_LAMBDA_DICE,
    DEFAULT_TOPK_RATIO,
)
from efm_seg.efm.weights import (
    DEFAULT_ALPHA_F,
    DEFAULT_BETA_F,
    DEFAULT_GAMMA,
    DEFAULT_KERNEL_SIZE,
    WeightForm,
    _check_form,
    boundary_weight,
    efm_factor,
)


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager[object]:
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def topk_mean(
    pixel_loss: torch.Tensor, topk_ratio: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 11: mean of the top-k fraction of per-pixel losses, taken per image.

    Each image keeps its ``k_i = ceil(topk_ratio · n_i)`` largest losses among its ``n_i`` valid
    pixels, and the images' top-k means are averaged with weights ``n_i / Σ n``. Per image rather
    than per batch so that one easy image still contributes its hardest pixels instead of being
    crowded out by a hard one. The ``n_i`` weights make ``topk_ratio=1`` exactly the plain mean over
    all valid pixels of the batch (``F.cross_entropy``'s mean with ``ignore_index``), and since
    they do not depend on ``topk_ratio`` and each image's top-k mean can only grow as k shrinks, a
    lower ratio never lowers the result. Without ignore pixels all ``n_i`` are equal and this is
    the mean of the ``B·k`` selected values.

    The selection asks for unsorted values (sorting the kept quarter of a 512² image costs more
    than the whole rest of the loss on a CPU), one call per distinct ``k_i`` — a single call when
    the images hold equally many valid pixels, as tiles usually do. Reading the ``k_i`` costs one
    device sync on a GPU.

    Args:
        pixel_loss: Non-negative per-pixel losses ``(B, H, W)``; values at pixels outside
            ``valid`` are not used.
        topk_ratio: The fraction k in (0, 1].
        valid: Boolean ``(B, H, W)`` mask of valid pixels, or ``None`` if all are valid.

    Returns:
        Scalar: the top-k mean (0 if there is no valid pixel).

    Raises:
        ValueError: if ``topk_ratio`` is not in (0, 1].
    """
    ratio = check_number("topk_ratio", topk_ratio, low=0.0, high=1.0, low_open=True)
    batch = pixel_loss.shape[0]
    flat = pixel_loss.reshape(batch, -1)
    pixels = flat.shape[1]
    if valid is None:
        if ratio == 1.0:
            return flat.mean()
        k = math.ceil(ratio * pixels)
        return flat.topk(k, dim=1, sorted=False).values.mean()
    valid = valid.reshape(batch, -1)
    counts = valid.sum(dim=1)
    total = counts.sum().clamp_min(1)
    if ratio == 1.0:
        return torch.where(valid, flat, 0.0).sum() / total
    # Ignore pixels rank below every valid one (losses are >= 0) and are never among the k_i kept.
    ranked = torch.where(valid, flat, -1.0)
    per_image = flat.new_zeros(batch)
    # k_i = ceil(n_i · ratio) in float64, as for k above (n_i = HW gives the same k).
    ks = torch.ceil(counts.double() * ratio).long().tolist()
    for k in sorted(set(ks) - {0}):
        rows = [i for i, k_i in enumerate(ks) if k_i == k]
        index = torch.tensor(rows, device=flat.device)
        chosen = ranked if len(rows) == batch else ranked.index_select(0, index)
        sums = chosen.topk(k, dim=1, sorted=False).values.sum(dim=1)
        per_image = per_image.index_put((index,), sums / k)
    return (per_image * counts).sum() / total


class EFMLoss(nn.Module):
    """L_total of eq. 10: ``λ1 · topk_mean(W · CE) + λ2 · Dice``.

    * CE: per-pixel cross-entropy with label smoothing (``F.cross_entropy(reduction="none")``).
    * W (eq. 9): ``W_b · (1 + α_f·EFM^β_f)``, W_b from the target (eq. 8), EFM given by the caller
      (``efm=None`` → EFM factor 1; ``gamma=0`` → W_b = 1). W never carries gradient.
    * The ``1/N Σ`` of eq. 10 is a plain mean over the N *valid* (non-ignore) pixels — not a
      W-normalised mean (``Σ W·CE / Σ W``), so W raises the CE term's scale as in the paper — and
      with ``topk_ratio < 1`` it becomes the per-image top-k mean of eq. 11 (:func:`topk_mean`).
    * Dice: smp's multi-class soft Dice from the logits, ignore pixels excluded.

    ``EFMLoss(C, gamma=0, topk_ratio=1.0)`` called without an EFM is exactly the baseline of eq. 6,
    ``λ1 · CE + λ2 · Dice``. The loss is computed in float32 even under autocast; gradients reach
    the logits only.

    Args:
        num_classes: Number of classes C (channels of the logits).
        lambda_ce: λ1, ``>= 0``. Default 1.0 (the paper gives no value; equal weights).
        lambda_dice: λ2, ``>= 0``. Default 1.0.
        label_smoothing: CE label smoothing in [0, 1]. Default 0.05 (the paper's).
        alpha_f: α_f of eq. 9, ``>= 0``. Default 2.0 (the paper's).
        beta_f: β_f of eq. 9, ``> 0``. Default 1.5 (the paper's).
        gamma: γ of eq. 8, ``>= 0``. Default 1.2 (the paper's).
        topk_ratio: Fraction k of eq. 11 in (0, 1]; 1.0 keeps every pixel. Default 0.25: the
            hardest quarter of each image's valid pixels — still a large sample (65 536 px of a
            512² tile) while the CE term concentrates on edges and errors; Dice sees all pixels.
        ignore_index: Label of pixels excluded from CE, Dice, EFM and W_b.
        form: ``"eq9"`` (default) or ``"eq7"`` for the EFM factor (see :func:`pixel_weights`).
        kernel_size: Odd pooling window of eq. 8. Default 3 (one pixel each side of an edge).

    Raises:
        ValueError: for any argument outside the ranges above.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        lambda_ce: float = DEFAULT_LAMBDA_CE,
        lambda_dice: float = DEFAULT_LAMBDA_DICE,
        label_smoothing: float = DEFAULT_LABEL_SMOOTHING,
        alpha_f: float = DEFAULT_ALPHA_F,
        beta_f: float = DEFAULT_BETA_F,
        gamma: float = DEFAULT_GAMMA,
        topk_ratio: float = DEFAULT_TOPK_RATIO,
        ignore_index: int | None = None,
        form: WeightForm = "eq9",
        kernel_size: int = DEFAULT_KERNEL_SIZE,
    ) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.lambda_ce = check_number("lambda_ce", lambda_ce, low=0.0)
        self.lambda_dice = check_number("lambda_dice", lambda_dice, low=0.0)
        self.label_smoothing = check_number("label_smoothing", label_smoothing, low=0.0, high=1.0)
        self.alpha_f = check_number("alpha_f", alpha_f, low=0.0)
        self.beta_f = check_number("beta_f", beta_f, low=0.0, low_open=True)
        self.gamma = check_number("gamma", gamma, low=0.0)
        self.topk_ratio = check_number("topk_ratio", topk_ratio, low=0.0, high=1.0, low_open=True)
        self.ignore_index = check_ignore_index(ignore_index)
        self.form = _check_form(form)
        self.kernel_size = check_odd_kernel("kernel_size", kernel_size)
        # Fed the probabilities of the log-softmax the CE uses: one log-softmax (and one backward
        # through it) for both terms instead of one each.
        self.dice = DiceLoss(mode="multiclass", from_logits=False, ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, lambda_ce={self.lambda_ce}, "
            f"lambda_dice={self.lambda_dice}, label_smoothing={self.label_smoothing}, "
            f"alpha_f={self.alpha_f}, beta_f={self.beta_f}, gamma={self.gamma}, "
            f"topk_ratio={self.topk_ratio}, ignore_index={self.ignore_index}, "
            f"form={self.form!r}, kernel_size={self.kernel_size}"
        )

    def _check_inputs(
        self, logits: torch.Tensor, target: torch.Tensor, efm: torch.Tensor | None
    ) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ValueError(f"logits must have shape (B, C, H, W), got {shape}")
        if not logits.is_floating_point():
            raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits have {logits.shape[1]} channels but num_classes={self.num_classes}"
            )
        target = check_labels(target)
        expected = (logits.shape[0], *logits.shape[2:])
        if tuple(target.shape) != expected:
            raise ValueError(
                f"shape mismatch: logits are {tuple(logits.shape)}, so target must be "
                f"{expected}, got {tuple(target.shape)}"
            )
        if efm is not None and (not isinstance(efm, torch.Tensor) or tuple(efm.shape) != expected):
            shape = tuple(efm.shape) if isinstance(efm, torch.Tensor) else type(efm).__name__
            raise ValueError(f"efm must have shape {expected} like the target, got {shape}")
        return target

    def _cross_entropy(self, log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-pixel ``F.cross_entropy(reduction="none", label_smoothing=ε)`` from
        log-probabilities, as PyTorch computes it: ``(1 − ε)·NLL + ε/C · (−Σ_c log p_c)``.
        Values at ignore pixels are left as they come: :func:`topk_mean` never reads them."""
        ignore = -100 if self.ignore_index is None else self.ignore_index
        nll = F.nll_loss(log_probs, target, reduction="none", ignore_index=ignore)
        if self.label_smoothing == 0.0:
            return nll
        smooth = log_probs.sum(dim=1).neg_()
        return nll.mul(1.0 - self.label_smoothing).add_(
            smooth, alpha=self.label_smoothing / self.num_classes
        )

    def _weights(self, target: torch.Tensor, efm: torch.Tensor | None) -> torch.Tensor | None:
        """W of eq. 9, or ``None`` when it is identically 1 (no EFM and ``gamma=0``)."""
        weight = None
        if self.gamma > 0.0 and self.kernel_size > 1:
            weight = boundary_weight(
                target,
                self.num_classes,
                gamma=self.gamma,
                kernel_size=self.kernel_size,
                ignore_index=self.ignore_index,
            )
        if efm is not None:
            factor = efm_factor(efm, alpha_f=self.alpha_f, beta_f=self.beta_f, form=self.form)
            weight = factor.float() if weight is None else weight.mul_(factor)
        return weight

    def weight_map(self, target: torch.Tensor, efm: torch.Tensor | None = None) -> torch.Tensor:
        """The pixel weight W (eq. 9) this loss applies, ``(B, H, W)`` float32, e.g. to log it.

        Args:
            target: Ground-truth labels ``(B, H, W)``.
            efm: Fingerprint map ``(B, H, W)`` or ``None``.

        Returns:
            ``(B, H, W)`` float32 weights, without gradient.

        Raises:
            ValueError: if ``target`` is not ``(B, H, W)`` integer or ``efm`` has another shape.
        """
        target = check_labels(target)
        if efm is not None and efm.shape != target.shape:
            raise ValueError(f"efm must have shape {tuple(target.shape)}, got {tuple(efm.shape)}")
        weight = self._weights(target, efm)
        if weight is None:
            return torch.ones(target.shape, dtype=torch.float32, device=target.device)
        return weight

    def components(
        self, logits: torch.Tensor, target: torch.Tensor, efm: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The loss and its two terms, for logging.

        Args:
            logits: Raw network output ``(B, C, H, W)``, any floating dtype.
            target: Ground-truth labels ``(B, H, W)``, integer.
            efm: Fingerprint map ``(B, H, W)`` in [0, 1] (see :func:`fingerprint_map`), or
                ``None`` for an EFM factor of 1. Detached: it never carries gradient.

        Returns:
            ``{"loss": L_total, "ce": top-k mean of W·CE, "dice": Dice}``, float32 scalars;
            ``"loss"`` carries the gradient, the two terms are detached.

        Raises:
            ValueError: for a shape or dtype mismatch between logits, target and efm.
        """
        target = self._check_inputs(logits, target, efm)
        with _autocast_off(logits.device.type):
            log_probs = F.log_softmax(logits.float(), dim=1)
            ce_pixels = self._cross_entropy(log_probs, target)  # (B, H, W)
            weight = self._weights(target, efm)
            if weight is not None:
                ce_pixels = ce_pixels * weight
            valid = None if self.ignore_index is None else target != self.ignore_index
            ce = topk_mean(ce_pixels, self.topk_ratio, valid)
            if self.lambda_dice > 0.0:
                # smp's own from_logits path is log_softmax(...).exp(): the same probabilities.
                dice = self.dice(log_probs.exp(), target)
                loss = self.lambda_ce * ce + self.lambda_dice * dice
            else:
                dice = torch.zeros((), dtype=torch.float32, device=logits.device)
                loss = self.lambda_ce * ce
        return {"loss": loss, "ce": ce.detach(), "dice": dice.detach()}

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, efm: torch.Tensor | None = None
    ) -> torch.Tensor:
        """L_total of eq. 10.

        Args:
            logits: Raw network output ``(B, C, H, W)``, any floating dtype.
            target: Ground-truth labels ``(B, H, W)``, integer.
            efm: Fingerprint map ``(B, H, W)`` in [0, 1], or ``None`` for an EFM factor of 1.

        Returns:
            Scalar float32 loss.

        Raises:
            ValueError: for a shape or dtype mismatch between logits, target and efm.
        """
        return self.components(logits, target, efm)["loss"]
