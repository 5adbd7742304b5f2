"""Segmentation models (segmentation-models-pytorch), their encoder weights and checkpoints.

A :class:`ModelSpec` names everything needed to rebuild a network: architecture, encoder,
number of classes and input channels. Checkpoints (:func:`make_checkpoint`) hold that spec as a
plain dict beside the weights, so :func:`model_from_checkpoint` rebuilds the model without any
other configuration, and they hold nothing but tensors and plain Python values, so they load
with ``torch.load(..., weights_only=True)`` (no arbitrary code runs when a checkpoint is read).

Encoder weights (:func:`build_model`) are random, downloaded by smp (``imagenet`` and the other
names smp knows for an encoder), or read from a local file, for machines without internet.
A failed download is an error, never a silent fallback to random weights.
"""

from efm_seg.models.build import (
    RANDOM_WEIGHTS,
    WEIGHT_FILE_SUFFIXES,
    build_model,
    check_input_size,
)
from efm_seg.models.checkpoints import CHECKPOINT_FORMAT, make_checkpoint, model_from_checkpoint
from efm_seg.models.spec import ModelSpec, architectures

__all__ = [
    "CHECKPOINT_FORMAT",
    "RANDOM_WEIGHTS",
    "WEIGHT_FILE_SUFFIXES",
    "ModelSpec",
    "architectures",
    "build_model",
    "check_input_size",
    "make_checkpoint",
    "model_from_checkpoint",
]
