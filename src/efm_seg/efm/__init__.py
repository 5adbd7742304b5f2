"""Error Fingerprint Maps (EFM) as plain PyTorch: maps, pixel weights and the training loss.

The method of Vlasenko & Dashkevych, section 2 (eqs. 1-11), usable from any training loop and on
any segmentation architecture; it does not import Kedro.

* :func:`error_map` (eq. 2), :func:`entropy_map` (eq. 3), :func:`fingerprint_map` (eqs. 4-5);
* :func:`boundary_weight` (eq. 8), :func:`pixel_weights` (eqs. 9 / 7);
* :class:`EFMLoss` (eq. 10 with the top-k of eq. 11; eq. 6 with ``gamma=0, topk_ratio=1``).

Typical step::

    logits = model(images)
    with torch.no_grad():
        efm = fingerprint_map(logits.detach().float().softmax(1), masks, ignore_index=255)
    loss = criterion(logits, masks, efm)  # criterion = EFMLoss(C, ignore_index=255)
"""

from importlib import import_module
from typing import TYPE_CHECKING

from efm_seg.efm.defaults import (
    DEFAULT_ALPHA,
    DEFAULT_ALPHA_F,
    DEFAULT_BETA_F,
    DEFAULT_GAMMA,
    DEFAULT_KERNEL_SIZE,
    DEFAULT_LABEL_SMOOTHING,
    DEFAULT_LAMBDA_CE,
    DEFAULT_LAMBDA_DICE,
    DEFAULT_SIGMA,
    DEFAULT_TOPK_RATIO,
)

# The functions need torch; they are imported on first use, so that reading the defaults (the
# parameter schemas do, whenever the CLI starts) costs no torch import.
_LAZY = {
    "EFMLoss": "loss",
    "topk_mean": "loss",
    "entropy_map": "maps",
    "error_map": "maps",
    "fingerprint_map": "maps",
    "boundary_weight": "weights",
    "efm_factor": "weights",
    "pixel_weights": "weights",
}

if TYPE_CHECKING:
    from efm_seg.efm.loss import EFMLoss, topk_mean
    from efm_seg.efm.maps import entropy_map, error_map, fingerprint_map
    from efm_seg.efm.weights import boundary_weight, efm_factor, pixel_weights


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f"efm_seg.efm.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'efm_seg.efm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_ALPHA_F",
    "DEFAULT_BETA_F",
    "DEFAULT_GAMMA",
    "DEFAULT_KERNEL_SIZE",
    "DEFAULT_LABEL_SMOOTHING",
    "DEFAULT_LAMBDA_CE",
    "DEFAULT_LAMBDA_DICE",
    "DEFAULT_SIGMA",
    "DEFAULT_TOPK_RATIO",
    "EFMLoss",
    "boundary_weight",
    "efm_factor",
    "entropy_map",
    "error_map",
    "fingerprint_map",
    "pixel_weights",
    "topk_mean",
]
