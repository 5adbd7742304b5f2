"""Encoded samples (PNG image + label map per sample) as a Kedro dataset."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from efm_seg.data.samples import EncodedSample, SampleStore, open_store, write_store


class SampleStoreDataset(AbstractDataset[Mapping[str, EncodedSample], SampleStore]):
    """A folder of encoded samples, written atomically, read lazily.

    ``save`` takes ``{sample_id: EncodedSample}`` or a stream of ``(sample_id, sample, index
    row)`` (preprocessing's, written one sample at a time) and replaces the whole store in one
    step;
    ``load`` returns a :class:`SampleStore` that reads samples one at a time (training never
    holds the dataset in memory).
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> SampleStore:
        return open_store(self._path)

    def save(self, data: Mapping[str, EncodedSample] | Iterable[tuple]) -> None:
        # Preprocessing's stream says which dataset.bands its images were read as.
        write_store(self._path, data, bands=getattr(data, "bands", None))

    def _exists(self) -> bool:
        return (self._path / "samples.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
