"""Split node: assign whole groups of samples to train/val/test (:mod:`efm_seg.data.split`)."""

from __future__ import annotations

import pandas as pd
from pydantic import ValidationError

from efm_seg.data.split import assign_splits
from efm_seg.parameters import SplitParams, describe


def split_samples(encoded_index: pd.DataFrame, split: SplitParams) -> pd.DataFrame:
    """Assign every encoded sample to train, val or test (see
    :func:`efm_seg.data.split.assign_splits`).

    Returns:
        ``sample_id, source_id, group, split``, in the index's order.
    """
    try:
        params = SplitParams.model_validate(split)
    except ValidationError as exc:
        raise ValueError(describe(exc, "split")) from None
    return assign_splits(
        encoded_index,
        params.fractions.model_dump(),
        seed=params.seed,
        group_by=params.group_by,
        predefined=params.predefined,
        rest=params.rest,
    )
