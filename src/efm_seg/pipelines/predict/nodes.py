"""Predict node: a trained stage's checkpoint on every scene of a folder, any size
(:mod:`efm_seg.inference.predict`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from efm_seg.data.scenes import Prediction, SceneFile
from efm_seg.parameters import PredictParams


def predict_scenes(
    scenes: Mapping[str, SceneFile],
    checkpoint: dict[str, Any],
    dataset: Mapping[str, Any],
    predict: PredictParams,
) -> dict[str, Callable[[], Prediction]]:
    """Check every scene and the checkpoint, then return each scene's prediction, computed
    when it is written (see :func:`efm_seg.inference.predict.predict_scenes`)."""
    # torch: imported when the node runs, so that the CLI (which imports every pipeline to
    # register it) never pays for it.
    from efm_seg.inference.predict import predict_scenes as predict_all

    return predict_all(scenes, checkpoint, dataset, predict)
