"""Split: fractions, grouping without leakage, stratification, reproducibility."""

import numpy as np
import pandas as pd
import pytest

from efm_seg.pipelines.split.nodes import split_samples

PARAMS = {"fractions": {"train": 0.8, "val": 0.1, "test": 0.1}, "seed": 3, "group_by": "group"}


def make_index(n_groups=20, per_group=3, rare_every=5, seed=0):
    """Samples in groups; class ``rare`` appears only in every ``rare_every``-th group."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for s in range(per_group):
            rows.append(
                {
                    "sample_id": f"g{g}_s{s}",
                    "source_id": f"g{g}_s{s // 2}",
                    "group": f"tile{g}",
                    "px_common": int(rng.integers(100, 200)),
                    "px_rare": 5 if g % rare_every == 0 else 0,
                    "px_ignore": 0,
                }
            )
    return pd.DataFrame(rows)


def test_every_sample_gets_one_split_in_roughly_the_asked_fractions():
    index = make_index(n_groups=40)
    result = split_samples(index, PARAMS)
    assert list(result["sample_id"]) == list(index["sample_id"])
    shares = result["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.8, abs=0.08)
    assert shares["val"] == pytest.approx(0.1, abs=0.06)
    assert shares["test"] == pytest.approx(0.1, abs=0.06)


@pytest.mark.parametrize("group_by", ["group", "source"])
def test_no_group_or_source_image_lands_in_two_splits(group_by):
    result = split_samples(make_index(), {**PARAMS, "group_by": group_by})
    assert (result.groupby("source_id")["split"].nunique() == 1).all()
    if group_by == "group":
        assert (result.groupby("group")["split"].nunique() == 1).all()
    else:
        assert (result.groupby("group")["split"].nunique() > 1).any()


def test_rare_class_reaches_every_split():
    index = make_index(n_groups=30, rare_every=6)  # 5 groups hold the rare class
    result = split_samples(index, PARAMS)
    rare = index["px_rare"] > 0
    assert set(result.loc[rare, "split"]) == {"train", "val", "test"}


@pytest.mark.parametrize("seed", range(6))
def test_several_rare_classes_each_reach_every_split(seed):
    """Balancing sizes alone spreads only the first rare groups it places over the splits; the
    ones after go to train, the split furthest below its size. Stratification places each
    rare class's groups where that class is missing."""
    rare_groups = {"a": {0, 7, 14}, "b": {3, 10, 17, 24}, "c": {5, 12, 19, 26, 33}}
    index = make_index(n_groups=40, rare_every=10**6)
    for name, groups in rare_groups.items():
        index[f"px_{name}"] = [5 if int(g[4:]) in groups else 0 for g in index["group"]]
    result = split_samples(index, {**PARAMS, "seed": seed})
    for name in rare_groups:
        holding = index[f"px_{name}"] > 0
        assert set(result.loc[holding, "split"]) == {"train", "val", "test"}, name


def test_seeded_and_reproducible():
    index = make_index(n_groups=30)
    first = split_samples(index, PARAMS)
    assert first.equals(split_samples(index, PARAMS))
    others = [split_samples(index, {**PARAMS, "seed": s})["split"] for s in range(4, 10)]
    assert any(not o.equals(first["split"]) for o in others)


def test_each_active_split_gets_a_group_even_when_few():
    result = split_samples(make_index(n_groups=3), PARAMS)
    assert sorted(result.groupby("split")["group"].nunique().items()) == [
        ("test", 1), ("train", 1), ("val", 1),
    ]  # fmt: skip
    no_test = split_samples(
        make_index(n_groups=3), {**PARAMS, "fractions": {"train": 0.5, "val": 0.5, "test": 0}}
    )
    assert "test" not in set(no_test["split"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fractions": {"train": 0.8, "val": 0.1, "test": 0.2}}, "sum to 1.1"),
        ({"fractions": {"train": 0.8, "val": 0.2}}, r"split\.fractions\.test: Field required"),
        ({"fractions": {"train": 1.2, "val": -0.1, "test": -0.1}}, r"fractions\.train: .*1"),
        ({"group_by": "tile"}, "split.group_by"),
        ({"seed": "x"}, "split.seed"),
        ({"stratify": True}, "unknown key"),
    ],
)
def test_invalid_parameters_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        split_samples(make_index(), {**PARAMS, **change})


def test_too_few_groups_is_a_clear_error():
    with pytest.raises(ValueError, match="only 2 group"):
        split_samples(make_index(n_groups=2), PARAMS)
