"""Labelling scenes of any size with a trained stage's checkpoint.

The checkpoint and every scene are checked first (each scene read to its end), so that a bad
file stops the run before hours are spent on the scenes before it. Each scene is then predicted
while its files are written, one row of crops at a time (:mod:`efm_seg.inference.streaming`):
one scene at a time, and of a GeoTIFF only the crop being read, the probabilities of the columns
a crop still reaches, and the rows the next row of crops shares.
Progress is a bar on a terminal and a log line every 10 % elsewhere (Airflow task logs).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from tqdm.auto import tqdm

from efm_seg.basics.devices import resolve_device
from efm_seg.basics.durations import duration_text
from efm_seg.basics.mappings import as_mapping
from efm_seg.data.labels import LabelScheme
from efm_seg.data.scenes import Legend, Predictions, SceneFile, write_label_map
from efm_seg.inference.streaming import LabelledBlock, label_blocks, window_count
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
            preview size, and whether a confidence map is written (scaled by the checkpoint's
            ``temperature``).

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
    labeller = _Labeller.of(checkpoint, settings)
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
        labeller.device,
        "the dataset's own (dataset.classes)" if scheme.mode == "ids" else "class positions",
        legend.nodata,
    )

    if settings.confidence and "temperature" not in checkpoint:
        logger.warning(
            "the %s checkpoint has no temperature (made before temperatures were fitted): its "
            "confidence maps are the blended probabilities as they are, not calibrated",
            stage,
        )
    elif settings.confidence:
        logger.info("Confidence maps: temperature %.3f (the checkpoint's)", labeller.temperature)

    def writer(scene_file: SceneFile):
        def write(folder: Path) -> dict:
            with scene_file.open(bands, settings.nodata) as reader:
                total = window_count(reader.height, reader.width, settings.window, settings.overlap)
                with _Progress(scene_file.path.name, total, reader.height * reader.width) as done:
                    blocks = labeller.blocks(
                        reader.read, reader.height, reader.width, progress=done
                    )
                    files, counts = write_label_map(
                        folder, reader, blocks, legend, settings.preview_size,
                        settings.overlay_alpha, confidence=settings.confidence,
                    )  # fmt: skip
                logger.info("%s: %d x %d predicted, %s", reader.path.name, reader.width,
                            reader.height, ", ".join(files))  # fmt: skip
                return counts.row(reader.path.name, reader.info, legend)

        return write

    return Predictions(legend, {name: writer(scene) for name, scene in scenes.items()})


def label_images(
    images: np.ndarray,
    checkpoint: dict[str, Any],
    dataset: Mapping[str, Any],
    predict: PredictParams,
) -> np.ndarray:
    """Label images held in memory as :func:`predict_scenes` labels scenes read from files: the
    same crops, blending and ids (the MLflow model's pipeline, ``kedro run --pipelines
    training`` with tracking).

    Args:
        images: One image ``(H, W, bands)`` or a batch ``(N, H, W, bands)`` of ``uint8``, with the
            bands of the scenes the model was trained on (``dataset.bands`` picks from them, as
            from a file's bands); a single-band image may be ``(H, W)``.
        checkpoint: A stage's checkpoint; its classes must be ``dataset.classes``.
        dataset: ``params:dataset``.
        predict: ``params:predict``: window, overlap, TTA, batch size, device and ``nodata``
            (pixels whose every band holds it get the legend's nodata value).

    Returns:
        ``(H, W)`` or ``(N, H, W)`` ids as the predict pipeline writes them (:class:`Legend`).

    Raises:
        ValueError: The images are not ``uint8`` or lack a band the model takes; the checkpoint
            has other classes than the configuration.
    """
    try:
        settings = PredictParams.model_validate(as_mapping(predict))
    except ValidationError as exc:
        raise ValueError(describe(exc, "predict")) from None
    scheme = LabelScheme.from_params(as_mapping(dataset))
    stage = (checkpoint.get("lineage") or {}).get("stage", checkpoint.get("stage"))
    check_stage_checkpoint(checkpoint, stage, scheme.classes, "predict")
    batch = np.asarray(images)
    if batch.dtype != np.uint8:
        raise ValueError(f"images are {batch.dtype}; the model takes 8-bit images (uint8)")
    single = batch.ndim in (2, 3)
    if batch.ndim == 2:  # one single-band image
        batch = batch[..., None]
    if single:
        batch = batch[None]
    if batch.ndim != 4 or 0 in batch.shape:
        raise ValueError(
            f"images have shape {tuple(np.shape(images))}; expected (H, W, bands) or "
            "(N, H, W, bands)"
        )
    labeller = _Labeller.of(checkpoint, settings)
    legend = Legend.of(scheme)
    labelled = []
    for given in batch:
        image = labeller.take_bands(given)
        valid = None if settings.nodata is None else ~np.all(image == settings.nodata, axis=2)
        ids = np.full(image.shape[:2], legend.nodata, dtype=legend.dtype)

        def read(top: int, bottom: int, left: int, right: int, image=image, valid=valid):
            block = np.s_[top:bottom, left:right]
            return image[block], None if valid is None else valid[block]

        for block in labeller.blocks(read, image.shape[0], image.shape[1]):
            height, width = block.labels.shape
            ids[block.top : block.top + height, block.left : block.left + width] = legend.ids_of(
                block.labels, block.valid
            )
        labelled.append(ids)
    return labelled[0] if single else np.stack(labelled)


@dataclass(frozen=True)
class _Labeller:
    """A checkpoint's model, ready to label rows of pixels with ``predict``'s settings."""

    model: torch.nn.Module
    bands: tuple[int, ...] | None  # dataset.bands when it was trained (1-based), else all
    in_channels: int
    mean: torch.Tensor
    std: torch.Tensor
    device: torch.device
    settings: PredictParams
    temperature: float  # post-hoc temperature scaling, fitted when the checkpoint was made

    @classmethod
    def of(cls, checkpoint: Mapping[str, Any], settings: PredictParams) -> _Labeller:
        spec = ModelSpec.from_dict(checkpoint["model_spec"])
        check_input_size(spec, settings.window, settings.window, setting="predict.window")
        normalization = checkpoint_normalization(checkpoint)
        device = resolve_device(settings.device)
        bands = checkpoint.get("bands")
        return cls(
            model=model_from_checkpoint(checkpoint).to(device).eval(),
            bands=None if bands is None else tuple(int(band) for band in bands),
            in_channels=spec.in_channels,
            mean=torch.tensor(normalization["mean"], dtype=torch.float32)[:, None, None],
            std=torch.tensor(normalization["std"], dtype=torch.float32)[:, None, None],
            device=device,
            settings=settings,
            temperature=float(checkpoint.get("temperature", 1.0)),
        )

    def take_bands(self, image: np.ndarray) -> np.ndarray:
        """The bands the model reads, of an ``(H, W, bands)`` image held in memory."""
        if self.bands is None:
            if image.shape[2] != self.in_channels:
                raise ValueError(
                    f"images have {image.shape[2]} band(s), but the model takes {self.in_channels}"
                )
            return image
        if image.shape[2] < max(self.bands):
            raise ValueError(
                f"images have {image.shape[2]} band(s), but the model takes bands "
                f"{list(self.bands)} of its images (dataset.bands when it was trained)"
            )
        return np.ascontiguousarray(image[:, :, [band - 1 for band in self.bands]])

    def blocks(
        self,
        read: Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray | None]],
        height: int,
        width: int,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[LabelledBlock]:
        """The scene's labels, block by block (:func:`label_blocks`), from ``read``:
        rows ``top..bottom-1`` and columns ``left..right-1`` as ``(h, w, C)`` uint8 and their
        valid pixels; with ``predict.confidence``, each block's temperature-scaled confidence
        too."""

        def normalised(top: int, bottom: int, left: int, right: int):
            image, valid = read(top, bottom, left, right)
            # torch.tensor copies (arrays read through Pillow are read-only).
            pixels = torch.tensor(image).permute(2, 0, 1).float() / 255.0
            return (pixels - self.mean) / self.std, valid

        settings = self.settings
        return label_blocks(
            normalised, height, width, self.model, window=settings.window,
            overlap=settings.overlap, tta=settings.tta, batch_size=settings.batch_size,
            device=self.device, progress=progress,
            temperature=self.temperature if settings.confidence else None,
        )  # fmt: skip


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
        reached = min(10, self.done * 10 // max(self.total, 1))
        if reached < self.next_tenth:
            return
        # One line for the highest tenth reached (skipped nodata crops can pass several at once).
        elapsed = time.perf_counter() - self.started
        rate = self.pixels * self.done / self.total / max(elapsed, 1e-9) / 1e6
        left = elapsed * (self.total - self.done) / max(self.done, 1)
        logger.info(
            "%s: %d%% (%d of %d windows), %.2f MPix/s, %s left",
            self.name, 10 * reached, self.done, self.total, rate, duration_text(left),
        )  # fmt: skip
        self.next_tenth = reached + 1
