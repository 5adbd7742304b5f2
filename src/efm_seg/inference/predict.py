"""Labelling scenes of any size with a trained stage's checkpoint: the scenes and the checkpoint
checked first, then each scene predicted when it is written (one in memory at a time)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from efm_seg.basics.devices import resolve_device
from efm_seg.basics.mappings import as_mapping
from efm_seg.data.imagery import select_bands
from efm_seg.data.labels import LabelScheme
from efm_seg.data.scenes import Prediction, SceneFile
from efm_seg.inference.sliding import sliding_window_probs
from efm_seg.loading import checkpoint_normalization
from efm_seg.models import ModelSpec, check_input_size, model_from_checkpoint
from efm_seg.parameters import PredictParams, describe

logger = logging.getLogger(__name__)


def predict_scenes(
    scenes: Mapping[str, SceneFile],
    checkpoint: dict[str, Any],
    dataset: Mapping[str, Any],
    predict: PredictParams,
) -> dict[str, Callable[[], Prediction]]:
    """Check every scene and the checkpoint, then return each scene's prediction, computed
    when it is written (one scene in memory at a time).

    Args:
        scenes: ``predict_scenes``: the folder's scenes by name.
        checkpoint: ``predict.checkpoint``: the best checkpoint of ``predict.stage``.
        dataset: ``params:dataset``: its classes must be the checkpoint's.
        predict: ``params:predict``: stage, window, overlap, TTA, batch size, device.

    Raises:
        ValueError: The checkpoint is another stage's or has other classes than the
            configuration; a scene cannot be read or has another band count than the model's
            input; the window does not suit the architecture.
    """
    try:
        settings = PredictParams.model_validate(as_mapping(predict))
    except ValidationError as exc:
        raise ValueError(describe(exc, "predict")) from None
    scheme = LabelScheme.from_params(as_mapping(dataset))
    stage = (checkpoint.get("lineage") or {}).get("stage", checkpoint.get("stage"))
    if stage != settings.stage:
        raise ValueError(
            f"predict.checkpoint is the {stage} stage's checkpoint but predict.stage is "
            f"{settings.stage}: choose the stage on the command line (kedro run --pipelines "
            f"predict --params predict.stage={settings.stage}), which the catalog entry follows"
        )
    if list(checkpoint.get("classes", [])) != list(scheme.classes):
        raise ValueError(
            f"the {stage} checkpoint was trained on classes {checkpoint.get('classes')}, but "
            f"dataset.classes is {list(scheme.classes)}: predict with the environment it was "
            "trained in (--env)"
        )
    spec = ModelSpec.from_dict(checkpoint["model_spec"])
    bands = checkpoint.get("bands")
    bands = None if bands is None else tuple(int(band) for band in bands)
    for scene in scenes.values():
        *_, count = scene.probe()
        if bands is None and count != spec.in_channels:
            raise ValueError(
                f"{scene.path}: {count} band(s), but the {stage} model takes {spec.in_channels} "
                "(RGB)"
            )
        if bands is not None and count < max(bands):
            raise ValueError(
                f"{scene.path}: {count} band(s), but the {stage} model takes bands "
                f"{list(bands)} of its images (dataset.bands when it was trained)"
            )
    normalization = checkpoint_normalization(checkpoint)
    check_input_size(spec, settings.window, settings.window, setting="predict.window")
    device = resolve_device(settings.device)
    model = model_from_checkpoint(checkpoint).to(device).eval()
    colours = tuple(tuple(int(v) for v in c) for c in scheme.display_colours)
    logger.info(
        "Predicting %d scene(s) with the %s checkpoint of run %s (window %d, overlap %d%s) on %s",
        len(scenes),
        stage,
        (checkpoint.get("lineage") or {}).get("run_id", "?"),
        settings.window,
        settings.overlap,
        ", TTA" if settings.tta else "",
        device,
    )

    def predictor(scene_file: SceneFile) -> Callable[[], Prediction]:
        def predict_one() -> Prediction:
            scene = scene_file.load()
            # The bands the model was trained on, in its order; torch.tensor copies (arrays
            # read through Pillow are read-only).
            channels = scene.image if bands is None else select_bands(scene.image, bands)
            image = torch.tensor(channels).permute(2, 0, 1).float() / 255.0
            image = (image - _column(normalization["mean"])) / _column(normalization["std"])
            probs = sliding_window_probs(
                model,
                image,
                window=settings.window,
                overlap=settings.overlap,
                tta=settings.tta,
                batch_size=settings.batch_size,
                device=device,
            )
            labels = probs.argmax(0).numpy().astype(np.uint8)
            logger.info("%s: %d x %d predicted", scene.path.name, *labels.shape[::-1])
            return Prediction(scene, labels, scheme.classes, colours, settings.overlay_alpha)

        return predict_one

    return {name: predictor(scene) for name, scene in scenes.items()}


def _column(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)[:, None, None]
