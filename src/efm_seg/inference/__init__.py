"""Inference on images of any size (plain PyTorch, like ``efm_seg.efm``)."""

from efm_seg.inference.sliding import (
    blend_weights,
    check_window,
    sliding_window_probs,
    window_starts,
)

__all__ = ["blend_weights", "check_window", "sliding_window_probs", "window_starts"]
