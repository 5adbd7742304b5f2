"""Predict nodes: a trained stage's checkpoint on every scene of a folder, any size, and on
images given in memory (the MLflow model) (:mod:`efm_seg.inference.predict`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from efm_seg.data.scenes import Predictions, SceneFile
from efm_seg.parameters import PredictParams


def predict_scenes(
    scenes: Mapping[str, SceneFile],
    checkpoint: dict[str, Any],
    dataset: Mapping[str, Any],
    predict: PredictParams,
) -> Predictions:
    """Check the checkpoint and every scene, then return each scene's writer, which predicts
    it while writing it (see :func:`efm_seg.inference.predict.predict_scenes`)."""
    # torch: imported when the node runs, so that the CLI (which imports every pipeline to
    # register it) never pays for it.
    from efm_seg.inference.predict import predict_scenes as predict_all

    return predict_all(scenes, checkpoint, dataset, predict)


def label_images(
    images: np.ndarray,
    checkpoint: dict[str, Any],
    dataset: Mapping[str, Any],
    predict: PredictParams,
) -> np.ndarray:
    """The MLflow model's node: images given in memory labelled as :func:`predict_scenes`
    labels scenes (see :func:`efm_seg.inference.predict.label_images`)."""
    from efm_seg.inference.predict import label_images as label_all

    return label_all(images, checkpoint, dataset, predict)
