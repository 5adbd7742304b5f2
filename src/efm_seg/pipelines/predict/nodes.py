"""Predict node: a trained stage's checkpoint on every scene of a folder, any size
(:mod:`efm_seg.inference.predict`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
