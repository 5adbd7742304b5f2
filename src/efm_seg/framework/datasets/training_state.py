"""A training stage's resumable state as a Kedro dataset (see ``efm_seg.training.resume``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from efm_seg.training.resume import StateFile


class TrainingStateDataset(AbstractDataset[None, StateFile]):
    """Where a training stage keeps the state it resumes from after a crash.

    ``load`` returns a :class:`~efm_seg.training.resume.StateFile` handle (the file itself exists
    only while a stage is unfinished); the trainer saves through it at the end of every epoch,
    atomically, and removes the file when the stage finishes. Kedro never saves it.

    Example (``conf/base/catalog.yml``)::

        "{stage}.training_state":
          type: efm_seg.framework.datasets.TrainingStateDataset
          filepath: ${globals:data_root}/06_models/{stage}/training_state.pt
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> StateFile:
        return StateFile(self._filepath)

    def save(self, data: None) -> None:
        raise DatasetError(
            f"{self._filepath} is written by the trainer while it trains, never by a node output"
        )

    def _exists(self) -> bool:
        return True  # the handle always exists; whether a state was saved is the trainer's call

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
