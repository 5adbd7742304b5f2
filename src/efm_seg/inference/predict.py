"""Labelling scenes of any size with a trained stage's checkpoint.

The checkpoint and every scene are checked first (each scene read to its end), so that a bad
file stops the run before hours are spent on the scenes before it. Each scene is then predicted
while its files are written, a band of rows at a time (:mod:`efm_seg.inference.streaming`): one
scene in memory at a time, and of a GeoTIFF only the rows the sliding window still reaches.
Progress is a bar on a terminal and a log line every 10 % elsewhere (Airflow task logs).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from tqdm.auto import tqdm

from efm_seg.basics.devices import resolve_device
from efm_seg.basics.mappings import as_mapping
from efm_seg.data.labels import LabelScheme
from efm_seg.data.scenes import Legend, Predictions, SceneFile, write_label_map
from efm_seg.inference.streaming import label_rows, window_count
from efm_seg.loading import checkpoint_normalization
from efm_seg.models import ModelSpec, check_input_size, model_from_checkpoint
from efm_seg.models.checkpoints import check_stage_checkpoint
from efm_seg.parameters import PredictParams, describe

logger = logging.getLogger(__name__)


def predict_scenes(
    scenes: Mapping[str, SceneFile],
    checkpoint: dict[str, Any],
    dataset: Mapping[str, Any],
    predict: PredictParams,
) -> Predictions:
    """Check the checkpoint and every scene, then return each scene's writer, which predicts
    the scene while it writes it (see the module docstring).

    Args:
        scenes: ``predict_scenes``: the folder's scenes by name.
        checkpoint: ``predict.checkpoint``: the best checkpoint of ``predict.stage``.
        dataset: ``params:dataset``: its classes must be the checkpoint's.
        predict: ``params:predict``: stage, window, overlap, TTA, batch size, device, nodata,
            preview size.

    Raises:
        ValueError: The checkpoint is another stage's or has other classes than the
            configuration; a scene cannot be read to its end, is not 8 bits per band, or lacks
            a band the model takes; the window does not suit the architecture.
    """
    try:
        settings = PredictParams.model_validate(as_mapping(predict))
    except ValidationError as exc:
        raise ValueError(describe(exc, "predict")) from None
    scheme = LabelScheme.from_params(as_mapping(dataset))
    check_stage_checkpoint(checkpoint, settings.stage, scheme.classes, "predict")
    stage = settings.stage
    spec = ModelSpec.from_dict(checkpoint["model_spec"])
    bands = checkpoint.get("bands")
    bands = None if bands is None else tuple(int(band) for band in bands)
    for scene in scenes.values():
        info = scene.check()
        takes = info.data_bands(bands)
        if bands is None and len(takes) != spec.in_channels:
            raise ValueError(
                f"{scene.path}: {len(takes)} band(s), but the {stage} model takes "
                f"{spec.in_channels} (RGB)"
            )
        if bands is not None and info.count < max(bands):
            raise ValueError(
                f"{scene.path}: {info.count} band(s), but the {stage} model takes bands "
                f"{list(bands)} of its images (dataset.bands when it was trained)"
            )
        if info.geo is not None and info.geo.get("crs") is None:
            logger.warning(
                "%s has a transform but no coordinate reference system: its maps will have none",
                scene.path.name,
            )
    normalization = checkpoint_normalization(checkpoint)
    check_input_size(spec, settings.window, settings.window, setting="predict.window")
    device = resolve_device(settings.device)
    model = model_from_checkpoint(checkpoint).to(device).eval()
    legend = Legend.of(scheme)
    logger.info(
        "Predicting %d scene(s) with the %s checkpoint of run %s (window %d, overlap %d%s) on "
        "%s; ids written: %s, nodata %d (legend.csv)",
        len(scenes),
        stage,
        (checkpoint.get("lineage") or {}).get("run_id", "?"),
        settings.window,
        settings.overlap,
        ", TTA" if settings.tta else "",
        device,
        "the dataset's own (dataset.classes)" if scheme.mode == "ids" else "class positions",
        legend.nodata,
    )
    mean = torch.tensor(normalization["mean"], dtype=torch.float32)[:, None, None]
    std = torch.tensor(normalization["std"], dtype=torch.float32)[:, None, None]

    def writer(scene_file: SceneFile):
        def write(folder: Path) -> dict:
            with scene_file.open(bands, settings.nodata) as reader:

                def read(first: int, stop: int):
                    image, valid = reader.read(first, stop)
                    # torch.tensor copies (arrays read through Pillow are read-only).
                    pixels = torch.tensor(image).permute(2, 0, 1).float() / 255.0
                    return (pixels - mean) / std, valid

                total = window_count(reader.height, reader.width, settings.window, settings.overlap)
                with _Progress(scene_file.path.name, total, reader.height * reader.width) as done:
                    rows = label_rows(
                        read, reader.height, reader.width, model, window=settings.window,
                        overlap=settings.overlap, tta=settings.tta,
                        batch_size=settings.batch_size, device=device, progress=done,
                    )  # fmt: skip
                    files, counts = write_label_map(
                        folder, reader, ((r.first, r.labels, r.valid) for r in rows), legend,
                        settings.preview_size, settings.overlay_alpha,
                    )  # fmt: skip
                logger.info("%s: %d x %d predicted, %s", reader.path.name, reader.width,
                            reader.height, ", ".join(files))  # fmt: skip
                return counts.row(reader.path.name, reader.info, legend)

        return write

    return Predictions(legend, {name: writer(scene) for name, scene in scenes.items()})


class _Progress:
    """Crops done: a bar on a terminal, else a log line every 10 % (windows, MPix/s, ETA)."""

    def __init__(self, name: str, total: int, pixels: int) -> None:
        self.name, self.total, self.pixels = name, total, pixels
        self.done, self.next_tenth, self.started = 0, 1, time.perf_counter()
        self.bar = tqdm(total=total, desc=name, unit="window") if sys.stderr.isatty() else None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, windows: int) -> None:
        self.done += windows
        if self.bar is not None:
            self.bar.update(windows)
            return
        while self.next_tenth <= 10 and self.done * 10 >= self.next_tenth * self.total:
            elapsed = time.perf_counter() - self.started
            rate = self.pixels * self.done / self.total / max(elapsed, 1e-9) / 1e6
            left = elapsed * (self.total - self.done) / max(self.done, 1)
            logger.info(
                "%s: %d%% (%d of %d windows), %.2f MPix/s, %s left",
                self.name, 10 * self.next_tenth, self.done, self.total, rate, _duration(left),
            )  # fmt: skip
            self.next_tenth += 1


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
