"""Split nodes: assign whole groups of samples to train/val/test, stratified by class presence.

The paper (§3.1) splits 80/20 into train/validation and carves the test subset out of the
validation portion; the default fractions 0.8/0.1/0.1 are exactly that. Patches cut from one
source image always share a split, and with ``group_by: group`` so do all samples of one
configured group (a tile, a scene), so nothing seen in training leaks into evaluation.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from pydantic import ValidationError

from efm_seg.parameters import SplitParams, describe

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def split_samples(encoded_index: pd.DataFrame, split: SplitParams) -> pd.DataFrame:
    """Assign every encoded sample to train, val or test.

    Whole groups are assigned greedily, rarest classes first: each group goes to the split
    that is furthest below its target share of the group's rarest class plus of samples
    overall, both relative to that split's target.
    Every split with a positive fraction gets at least one group.

    Args:
        encoded_index: The preprocessing index (``sample_id``, ``source_id``, ``group`` and
            ``px_<class>`` counts).
        split: ``params:split`` (:class:`~efm_seg.parameters.SplitParams`): ``fractions``
            (``train``/``val``/``test``, summing to 1), ``seed`` and ``group_by`` (``group``
            or ``source``).

    Returns:
        ``sample_id, source_id, group, split``, in the index's order.
    """
    try:
        params = SplitParams.model_validate(split)
    except ValidationError as exc:
        raise ValueError(describe(exc, "split")) from None
    fractions, seed, group_by = params.fractions.model_dump(), params.seed, params.group_by
    key = "group" if group_by == "group" else "source_id"
    class_columns = [c for c in encoded_index.columns if c.startswith("px_") and c != "px_ignore"]
    if encoded_index.empty or not class_columns:
        raise ValueError("encoded_index has no samples or no px_<class> columns; run preprocessing")

    present = (encoded_index[class_columns].to_numpy() > 0).astype(np.int64)
    groups = encoded_index[key].astype(str).to_numpy()
    names, inverse = np.unique(groups, return_inverse=True)
    n_groups = len(names)
    active = [s for s in SPLITS if fractions[s] > 0]
    if n_groups < len(active):
        raise ValueError(
            f"only {n_groups} group(s) ({key}) for {len(active)} splits {active}; group by "
            "'source' (split.group_by), add data, or set unused fractions to 0"
        )
    group_size = np.bincount(inverse, minlength=n_groups)
    group_presence = np.zeros((n_groups, len(class_columns)), dtype=np.int64)
    np.add.at(group_presence, inverse, present)
    total_presence = group_presence.sum(axis=0)

    frac = np.array([fractions[s] for s in SPLITS])
    target_n = frac * len(encoded_index)
    target_presence = frac[:, None] * total_presence[None, :]
    assigned_n = np.zeros(len(SPLITS))
    assigned_presence = np.zeros((len(SPLITS), len(class_columns)))
    allowed = frac > 0

    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    rarity = np.where(group_presence > 0, total_presence[None, :], np.iinfo(np.int64).max).min(
        axis=1
    )
    order = order[np.argsort(rarity[order], kind="stable")]

    assignment = np.empty(n_groups, dtype=np.int64)
    for g in order:
        rarest = int(
            np.argmin(np.where(group_presence[g] > 0, total_presence, np.iinfo(np.int64).max))
        )
        # Needs are relative to each split's own target, so a small split that has not yet
        # seen a rare class is as needy as a large one: every split gets its share of it.
        target_class = np.maximum(target_presence[:, rarest], 1e-9)
        class_need = (target_class - assigned_presence[:, rarest]) / target_class
        size_need = (target_n - assigned_n) / np.maximum(target_n, 1e-9)
        if group_presence[g].sum() == 0:
            class_need = np.zeros_like(class_need)
        score = np.where(allowed, class_need + size_need, -np.inf)
        best = int(np.argmax(score + rng.uniform(0, 1e-9, size=score.shape)))
        assignment[g] = best
        assigned_n[best] += group_size[g]
        assigned_presence[best] += group_presence[g]

    # Every active split gets at least one group: take the smallest group from the split
    # that is furthest above its target.
    for s in np.flatnonzero(allowed):
        if (assignment == s).any():
            continue
        surplus = assigned_n - target_n
        donors = [d for d in np.argsort(-surplus) if (assignment == d).sum() > 1]
        donor = donors[0]
        candidates = np.flatnonzero(assignment == donor)
        moved = candidates[np.argmin(group_size[candidates])]
        assignment[moved] = s
        assigned_n[donor] -= group_size[moved]
        assigned_n[s] += group_size[moved]

    result = pd.DataFrame(
        {
            "sample_id": encoded_index["sample_id"].to_numpy(),
            "source_id": encoded_index["source_id"].to_numpy(),
            "group": encoded_index["group"].astype(str).to_numpy(),
            "split": np.array(SPLITS)[assignment[inverse]],
        }
    )
    _log_summary(result, present, class_columns)
    return result


def _log_summary(result: pd.DataFrame, present: np.ndarray, class_columns: list[str]) -> None:
    for name in SPLITS:
        mask = (result["split"] == name).to_numpy()
        if not mask.any():
            continue
        share = present[mask].mean(axis=0)
        logger.info(
            "split %-5s: %4d samples, %3d groups; images containing each class: %s",
            name,
            int(mask.sum()),
            result.loc[mask, "group"].nunique(),
            ", ".join(f"{c[3:]} {v:.0%}" for c, v in zip(class_columns, share, strict=True)),
        )
