"""The state file a training stage resumes from after a crash.

At the end of every ``every``-th epoch the trainer writes everything that changes while it trains
(:class:`~efm_seg.training.trainer.TrainState` and every random state) to one file, atomically.
Started again with the same configuration on the same data, it continues after the last saved
epoch and ends exactly as an uninterrupted run would have. When the stage finishes, the file is
removed. A state saved by a run with another configuration or other data is refused, never
resumed silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from efm_seg.basics.atomic import atomic_write

logger = logging.getLogger(__name__)

STATE_FORMAT = 1


class ResumeMismatchError(RuntimeError):
    """A saved training state belongs to another configuration or other data."""


class StateFile:
    """Where one stage's resumable state lives (plain PyTorch, no Kedro).

    Args:
        path: The state file; its folder is created on the first save.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or ``None`` when there is none. Read with ``weights_only=True``."""
        if not self.path.is_file():
            return None
        # torch here, not at the top: node signatures name StateFile, and the CLI imports them.
        import torch

        try:
            state = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as exc:
            raise ResumeMismatchError(
                f"cannot read the training state {self.path} with torch.load(weights_only=True):"
                f" {type(exc).__name__}: {str(exc).strip().splitlines()[0]}. Delete it, or start"
                " afresh with --params training.resume.enabled=false"
            ) from exc
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ResumeMismatchError(
                f"{self.path} is not a training state of this efm-seg; delete it, or start "
                "afresh with --params training.resume.enabled=false"
            )
        return dict(state)

    def save(self, state: Mapping[str, Any]) -> None:
        """Replace the saved state atomically (a crash mid-save keeps the previous one)."""
        import torch  # see load()

        atomic_write(self.path, lambda file: torch.save({**state, "format": STATE_FORMAT}, file))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"StateFile({str(self.path)!r})"


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The keys (dotted) whose values differ between two nested mappings."""
    keys = sorted(set(saved) | set(current))
    found = []
    for key in keys:
        a, b = saved.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += [f"{key}.{sub}" for sub in differences(a, b)]
        elif a != b:
            found.append(key)
    return found
