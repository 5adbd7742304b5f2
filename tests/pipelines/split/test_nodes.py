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


# Predefined splits: an official split or a fixed held-out area.


def test_predefined_groups_get_their_split_and_the_rest_is_stratified():
    index = make_index(n_groups=30)
    predefined = {"tile7": "test", "tile8": "test", "tile6": "val"}
    result = split_samples(index, {**PARAMS, "predefined": predefined, "seed": 5})
    by_group = result.groupby("group")["split"].agg(set)
    assert by_group["tile7"] == by_group["tile8"] == {"test"} and by_group["tile6"] == {"val"}
    rest = result[~result["group"].isin(predefined)]
    # The fractions apply to the rest: about 80/10/10 of its 27 groups, each split present.
    shares = rest.groupby("split")["group"].nunique() / rest["group"].nunique()
    assert set(shares.index) == {"train", "val", "test"}
    assert shares["train"] == pytest.approx(0.8, abs=0.1)
    # Still leakage-free, and the rest is split as it would be alone (same seed).
    assert (result.groupby("group")["split"].nunique() == 1).all()
    alone = split_samples(index[~index["group"].isin(predefined)].reset_index(drop=True), PARAMS)
    assert (
        alone["split"].tolist()
        == split_samples(index, {**PARAMS, "predefined": predefined})
        .loc[~index["group"].isin(predefined), "split"]
        .tolist()
    )


def test_predefined_with_the_rest_to_train_and_glob_patterns():
    index = make_index(n_groups=12)
    predefined = {"tile1?": "test", "tile[5-6]": "val"}  # tile10, tile11; tile5, tile6
    result = split_samples(index, {**PARAMS, "predefined": predefined, "rest": "train"})
    expected = {"tile10": "test", "tile11": "test", "tile5": "val", "tile6": "val"}
    by_group = result.groupby("group")["split"].first()
    assert by_group.to_dict() == {g: expected.get(g, "train") for g in by_group.index}


def test_predefined_source_images_with_group_by_source():
    index = make_index(n_groups=6)  # sources g<k>_s0 (2 samples) and g<k>_s1 (1 sample)
    params = {**PARAMS, "group_by": "source", "predefined": {"g0_s*": "test"}, "rest": "train"}
    result = split_samples(index, params)
    assert set(result.loc[result["source_id"].str.startswith("g0_"), "split"]) == {"test"}
    assert set(result.loc[~result["source_id"].str.startswith("g0_"), "split"]) == {"train"}


@pytest.mark.parametrize(
    ("predefined", "group_by", "message"),
    [
        ({"tile99": "test"}, "group", r"pattern 'tile99' matches no group or source image"),
        ({"tile1": "test", "tile*": "val"}, "group", r"given to test by 'tile1' and to val"),
        # One source image of tile0 named, the other not: tile0 would be divided.
        ({"g0_s0": "test"}, "group", r"names 2 of the 3 samples of group 'tile0'"),
        ({"tile1": "holdout"}, "group", r"split\.predefined\.tile1"),
    ],
)
def test_ambiguous_or_leaking_predefined_splits_are_refused(predefined, group_by, message):
    params = {**PARAMS, "group_by": group_by, "predefined": predefined}
    with pytest.raises(ValueError, match=message):
        split_samples(make_index(n_groups=6), params)


def test_a_conflicting_pattern_for_the_same_split_is_fine():
    result = split_samples(
        make_index(n_groups=6), {**PARAMS, "predefined": {"tile1": "test", "tile*1": "test"}}
    )
    assert set(result.loc[result["group"] == "tile1", "split"]) == {"test"}


def test_a_predefined_split_from_the_configuration_reaches_the_split_table(kedro_project):
    """Through Kedro (its parameter validation at session start, the catalog): a test area
    named in conf/local, on the demo data (one group per scene)."""
    import yaml

    from tests.conftest import kedro_run, latest_version

    (kedro_project / "conf/local/parameters_split.yml").write_text(
        yaml.safe_dump(
            {
                "split": {
                    "fractions": {"train": 0.8, "val": 0.2, "test": 0.0},
                    "seed": 1,
                    "group_by": "group",
                    "predefined": {"scene_00[0-1]": "test"},
                    "rest": "stratified",
                }
            }
        )
    )
    kedro_run(kedro_project, ["ingestion", "preprocessing", "split"])
    split = pd.read_csv(latest_version(kedro_project, "data/local/05_model_input/split.csv"))
    test_groups = set(split.loc[split["split"] == "test", "group"])
    assert test_groups == {"scene_000", "scene_001"}
    assert set(split["split"]) == {"train", "val", "test"}
