"""The per-sample EFM store: every training sample's map, quantised to uint8, in shared memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

_MEAN_MAP_CHUNK = 64
"""Samples summed at a time by :meth:`EFMStore.mean_map`: bounds its temporary memory."""


# --------------------------------------------------------------------------------------------
# EFM store
# --------------------------------------------------------------------------------------------


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class EFMStore:
    """Every training sample's EFM at full resolution, quantised to ``uint8``, in shared memory.

    The EFM of the trainer is recomputed every few epochs for all training samples (a no-grad
    pass) and read back by the dataset when the sample is next drawn. Kept as ``float32`` it
    would take 1 MiB per 512² sample; quantised as ``round(x · 255)`` it takes a quarter of that
    (256 KiB) with an error of at most ``0.5 / 255`` — far below anything the loss weights of
    eqs. 7/9 resolve — and it stays at full resolution, so no interpolation blurs the focus.

    All planes live in ONE ``(N, H, W)`` ``uint8`` tensor moved to shared memory, with a shared
    per-sample "updated" flag vector. DataLoader workers (forked, or spawned: torch pickles
    shared tensors by handle) therefore see every later :meth:`update` of the main process,
    including between epochs of persistent workers — no reloading, no copies. Updates are not
    synchronised with readers: a worker reading a sample while it is rewritten may get a plane
    that is partly old, partly new, which is harmless for a loss weight.

    Attributes:
        num_samples: N, the number of planes (rows are addressed ``0..N-1``).
        height: H of every plane.
        width: W of every plane.
    """

    def __init__(self, num_samples: int, height: int, width: int) -> None:
        """Allocate N zero planes of ``(height, width)`` in shared memory.

        Args:
            num_samples: Number of samples (rows), ``>= 1``.
            height: Plane height in pixels, ``>= 1``.
            width: Plane width in pixels, ``>= 1``.

        Raises:
            ValueError: if an argument is not a positive integer.
        """
        self.num_samples = _positive_int("num_samples", num_samples)
        self.height = _positive_int("height", height)
        self.width = _positive_int("width", width)
        self._maps = torch.zeros(
            (self.num_samples, self.height, self.width), dtype=torch.uint8
        ).share_memory_()
        # Flags in shared memory too: a plain Python bool set after the fork would never reach
        # the workers, which would keep treating the store as empty.
        self._updated = torch.zeros(self.num_samples, dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (
            f"EFMStore(num_samples={self.num_samples}, height={self.height}, "
            f"width={self.width}, ready={self.ready})"
        )

    @property
    def ready(self) -> bool:
        """True once :meth:`update` has stored at least one map (or a state with one was loaded)."""
        return bool(self._updated.any())

    @property
    def bytes_per_sample(self) -> int:
        """Bytes taken by one sample's plane: ``H · W`` (one byte per pixel)."""
        return self.height * self.width

    @property
    def nbytes(self) -> int:
        """Bytes taken by all planes, ``N · H · W``."""
        return self._maps.nbytes

    def _rows(self, indices: torch.Tensor | Sequence[int] | np.ndarray) -> torch.Tensor:
        rows = torch.as_tensor(indices).reshape(-1)
        if rows.is_floating_point() or rows.is_complex() or rows.dtype == torch.bool:
            raise ValueError(f"indices must be integers, got dtype {rows.dtype}")
        rows = rows.to(device="cpu", dtype=torch.int64)
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= self.num_samples):
            raise ValueError(
                f"indices must be in [0, {self.num_samples}), got min {int(rows.min())}, "
                f"max {int(rows.max())}"
            )
        return rows

    def update(
        self, indices: torch.Tensor | Sequence[int] | np.ndarray, maps: torch.Tensor
    ) -> None:
        """Store the maps of a batch of samples, quantised to ``uint8``.

        Args:
            indices: ``(B,)`` integer rows, a tensor (any device) or a sequence of ints.
            maps: ``(B, H, W)`` maps, nominally in [0, 1] (values outside are clamped, NaN
                becomes 0), on any device; detached here, never modified.

        Raises:
            ValueError: if ``maps`` is not ``(B, H, W)`` with this store's H, W, if B does not
                match the number of indices, or if an index is out of range.
        """
        if not isinstance(maps, torch.Tensor):
            raise ValueError(f"maps must be a torch.Tensor, got {type(maps).__name__}")
        if maps.ndim != 3 or tuple(maps.shape[1:]) != (self.height, self.width):
            raise ValueError(
                f"maps must have shape (B, {self.height}, {self.width}) to match the EFM "
                f"store, got {tuple(maps.shape)}"
            )
        rows = self._rows(indices)
        if rows.numel() != maps.shape[0]:
            raise ValueError(
                f"got {rows.numel()} indices for {maps.shape[0]} maps; they must match"
            )
        # Quantise where the maps are (e.g. on the GPU) and move a quarter of the bytes.
        # nan_to_num first creates a new tensor, so the in-place steps never touch the caller's.
        quantised = (
            torch.nan_to_num(maps.detach().float(), nan=0.0)
            .clamp_(0.0, 1.0)
            .mul_(255.0)
            .round_()
            .to(device="cpu", dtype=torch.uint8)
        )
        self._maps[rows] = quantised
        self._updated[rows] = True

    def get(self, index: int) -> np.ndarray:
        """The map of one sample as ``float32`` ``(H, W)`` in [0, 1] (zeros before any update).

        Args:
            index: Row, ``0..N-1``.

        Returns:
            A new array (not a view of the shared tensor).

        Raises:
            IndexError: if ``index`` is out of range.
        """
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise IndexError(f"index must be an int, got {index!r}")
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} EFM samples")
        if not self.ready:
            return np.zeros((self.height, self.width), dtype=np.float32)
        # Division (not multiplication by 1/255) maps 255 to exactly 1.0.
        return self._maps[int(index)].numpy().astype(np.float32) / np.float32(255.0)

    def mean_map(self) -> torch.Tensor:
        """Mean of the maps of the samples updated so far, ``float32`` ``(H, W)``, for reports.

        Zeros when no sample was updated. Summed in chunks of integers, so memory stays small
        for any N and the result does not depend on summation order.
        """
        rows = torch.nonzero(self._updated).reshape(-1)
        if rows.numel() == 0:
            return torch.zeros((self.height, self.width), dtype=torch.float32)
        total = torch.zeros((self.height, self.width), dtype=torch.int64)
        for start in range(0, rows.numel(), _MEAN_MAP_CHUNK):
            chunk = self._maps[rows[start : start + _MEAN_MAP_CHUNK]]
            total += chunk.sum(dim=0, dtype=torch.int64)
        return (total.double() / (255.0 * rows.numel())).float()

    def state_dict(self) -> dict[str, Any]:
        """The stored maps and flags (copies), for checkpoints and exact resume.

        Returns:
            ``{"maps": (N, H, W) uint8, "updated": (N,) bool, "ready": bool}``.
        """
        return {
            "maps": self._maps.clone(),
            "updated": self._updated.clone(),
            "ready": self.ready,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output, copying into the existing shared tensors.

        Copying in place (rather than replacing the tensors) keeps running workers in sync.
        A state without ``"updated"`` marks every sample updated when ``"ready"`` is true.

        Raises:
            ValueError: if the maps do not have this store's ``(N, H, W)`` shape.
        """
        maps = torch.as_tensor(state["maps"])
        expected = (self.num_samples, self.height, self.width)
        if tuple(maps.shape) != expected:
            raise ValueError(
                f"EFM state has maps of shape {tuple(maps.shape)}, the store expects {expected}"
            )
        if maps.dtype != torch.uint8:
            raise ValueError(f"EFM state maps must be uint8, got {maps.dtype}")
        updated = state.get("updated")
        if updated is None:
            updated = torch.full((self.num_samples,), bool(state.get("ready", False)))
        updated = torch.as_tensor(updated, dtype=torch.bool).reshape(-1)
        if updated.numel() != self.num_samples:
            raise ValueError(
                f"EFM state has {updated.numel()} 'updated' flags, the store expects "
                f"{self.num_samples}"
            )
        self._maps.copy_(maps)
        self._updated.copy_(updated)
