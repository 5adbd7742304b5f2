"""Durations as people read them in logs: seconds, minutes or hours, by size."""

from __future__ import annotations


def duration_text(seconds: float) -> str:
    """``42 s``, ``17 min`` or ``2.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
