"""The split: assign whole groups of samples to train/val/test, stratified by class presence.

The paper (§3.1) splits 80/20 into train/validation and carves the test subset out of the
validation portion; the default fractions 0.8/0.1/0.1 are exactly that. Patches cut from one
source image always share a split, and with ``group_by: group`` so do all samples of one
configured group (a tile, a scene), so nothing seen in training leaks into evaluation.

``predefined`` gives the split of some groups or source images outright (a dataset's official
split, a fixed held-out area): glob patterns matched against each sample's group and source
image. The rest is assigned as above (``rest: stratified``, with ``fractions`` applying to the
rest) or all goes to train (``rest: train``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Literal

import numpy as np
import pandas as pd

from efm_seg.basics.lineage import DataLineage, classes_fingerprint, split_fingerprint
from efm_seg.data.labels import LabelScheme
from efm_seg.data.samples import SampleStore

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def assign_splits(
    encoded_index: pd.DataFrame,
    fractions: Mapping[str, float],
    seed: int = 0,
    group_by: Literal["group", "source"] = "group",
    predefined: Mapping[str, str] | None = None,
    rest: Literal["stratified", "train"] = "stratified",
) -> pd.DataFrame:
    """Assign every encoded sample to train, val or test.

    Samples that a ``predefined`` pattern names get that split. The other groups are assigned
    greedily, rarest classes first: each group goes to the split that is furthest below its
    target share of the group's rarest class plus of samples overall, both relative to that
    split's target; every split with a positive fraction gets at least one group. With
    ``rest: train`` they all go to train instead.

    Args:
        encoded_index: The preprocessing index (``sample_id``, ``source_id``, ``group`` and
            ``px_<class>`` counts).
        fractions: ``train``/``val``/``test`` shares, summing to 1 (checked by
            :class:`~efm_seg.parameters.SplitParams` when they come from ``params:split``).
        seed: Seeds the assignment's tie-breaking.
        group_by: What must stay in one split: a configured ``group`` or a ``source`` image.
        predefined: Glob pattern of a group or source image -> its split.
        rest: Where the samples no pattern names go: ``stratified`` (with ``fractions``) or
            all to ``train``.

    Returns:
        ``sample_id, source_id, group, split``, in the index's order.

    Raises:
        ValueError: A pattern that names no sample; a sample two patterns give
            different splits; a group (or source image) only partly named by the patterns.
    """
    key = "group" if group_by == "group" else "source_id"
    class_columns = [c for c in encoded_index.columns if c.startswith("px_") and c != "px_ignore"]
    if encoded_index.empty or not class_columns:
        raise ValueError("encoded_index has no samples or no px_<class> columns; run preprocessing")
    present = (encoded_index[class_columns].to_numpy() > 0).astype(np.int64)
    labels = predefined_splits(encoded_index, dict(predefined or {}), key)
    unnamed = labels.isna().to_numpy()
    if unnamed.any() and rest == "train":
        labels[unnamed] = "train"
    elif unnamed.any():
        labels[unnamed] = _stratified(
            encoded_index.loc[unnamed, key].astype(str).to_numpy(),
            present[unnamed],
            dict(fractions),
            seed,
            key,
        )
    result = pd.DataFrame(
        {
            "sample_id": encoded_index["sample_id"].to_numpy(),
            "source_id": encoded_index["source_id"].to_numpy(),
            "group": encoded_index["group"].astype(str).to_numpy(),
            "split": labels.to_numpy(dtype=object),
        }
    )
    _log_summary(result, present, class_columns)
    return result


def predefined_splits(
    encoded_index: pd.DataFrame, predefined: dict[str, str], key: str
) -> pd.Series:
    """Each sample's split as ``predefined`` gives it (glob patterns matched against its group
    and its source image), or ``None`` where no pattern names it.

    Refuses what would make the result ambiguous or leak: a pattern matching nothing (a typo
    would silently put its area in training), a sample two patterns send to different splits,
    and a ``key`` unit (group, or source image with ``group_by: source``) whose samples are
    only partly named, since its other samples would be assigned on their own.
    """
    labels = pd.Series([None] * len(encoded_index), index=encoded_index.index, dtype=object)
    if not predefined:
        return labels
    names = {
        column: encoded_index[column].astype(str).to_numpy() for column in ("group", "source_id")
    }
    given_by: dict[int, str] = {}
    for pattern, split in predefined.items():
        matched = np.zeros(len(encoded_index), dtype=bool)
        for values in names.values():
            matched |= np.array([fnmatchcase(v, pattern) for v in values], dtype=bool)
        if not matched.any():
            raise ValueError(
                f"split.predefined: pattern {pattern!r} matches no group or source image "
                f"(groups: {_examples(names['group'])}; source images: "
                f"{_examples(names['source_id'])})"
            )
        for row in np.flatnonzero(matched):
            earlier = labels.iat[row]
            if earlier is not None and earlier != split:
                raise ValueError(
                    f"split.predefined: sample {encoded_index['sample_id'].iat[row]} is given "
                    f"to {earlier} by {given_by[row]!r} and to {split} by {pattern!r}"
                )
            labels.iat[row], given_by[row] = split, pattern
    units = encoded_index[key].astype(str)
    for unit, rows in labels.groupby(units.to_numpy()):
        splits = set(rows.dropna())
        if len(splits) > 1 or (splits and rows.isna().any()):
            named = ", ".join(sorted(str(s) for s in splits))
            what = "group" if key == "group" else "source image"
            raise ValueError(
                f"split.predefined names {rows.notna().sum()} of the {len(rows)} samples of "
                f"{what} {unit!r} ({named}): a {what} is never divided between splits; name "
                "all of it, or none"
            )
    return labels


def _examples(values: np.ndarray, count: int = 5) -> str:
    unique = sorted(set(values))
    shown = ", ".join(repr(v) for v in unique[:count])
    return shown + (f" and {len(unique) - count} more" if len(unique) > count else "")


def _stratified(
    groups: np.ndarray, present: np.ndarray, fractions: dict[str, float], seed: int, key: str
) -> np.ndarray:
    """The split of each sample of ``groups`` (its group names), by the greedy assignment of
    whole groups described in :func:`split_samples`."""
    names, inverse = np.unique(groups, return_inverse=True)
    n_groups = len(names)
    active = [s for s in SPLITS if fractions[s] > 0]
    if n_groups < len(active):
        raise ValueError(
            f"only {n_groups} group(s) ({key}) for {len(active)} splits {active}; group by "
            "'source' (split.group_by), add data, or set unused fractions to 0"
        )
    group_size = np.bincount(inverse, minlength=n_groups)
    group_presence = np.zeros((n_groups, present.shape[1]), dtype=np.int64)
    np.add.at(group_presence, inverse, present)
    total_presence = group_presence.sum(axis=0)

    frac = np.array([fractions[s] for s in SPLITS])
    target_n = frac * len(groups)
    target_presence = frac[:, None] * total_presence[None, :]
    assigned_n = np.zeros(len(SPLITS))
    assigned_presence = np.zeros((len(SPLITS), present.shape[1]))
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
    return np.array(SPLITS)[assignment[inverse]]


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


def split_ids(split: pd.DataFrame, samples: SampleStore) -> dict[str, list[str]]:
    """Sample ids per split, checked against the store they must all be in."""
    if not {"sample_id", "split"} <= set(split.columns):
        raise ValueError(
            "the split table needs columns sample_id and split; run the split pipeline"
        )
    missing = sorted(set(split["sample_id"]) - set(samples.ids))
    if missing:
        raise ValueError(
            f"{len(missing)} sample(s) of the split are not in the encoded samples (e.g. "
            f"{missing[:3]}): the split and the samples come from different preprocessing runs; "
            "run preprocessing and split again"
        )
    return {
        name: split.loc[split["split"] == name, "sample_id"].tolist()
        for name in ("train", "val", "test")
    }


def data_lineage(samples: SampleStore, split: pd.DataFrame, scheme: LabelScheme) -> DataLineage:
    """The fingerprints of the data a stage trains or is scored on."""
    return DataLineage(
        store=samples.fingerprint,
        split=split_fingerprint(split),
        classes=classes_fingerprint(scheme.classes, scheme.ignore_index),
    )
