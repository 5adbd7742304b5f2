"""Plain mappings from nested configuration: merged, or read from a validated parameter block."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, RootModel


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in, recursively for nested mappings."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def as_mapping(block: Any) -> dict[str, Any]:
    """A block as a plain mapping, whether Kedro passed its validated model or a dict."""
    if isinstance(block, RootModel):
        return dict(block.root)
    if isinstance(block, BaseModel):
        return block.model_dump()
    return dict(block or {})
