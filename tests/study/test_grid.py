"""The study's grid: which cells it trains and the exact recipe each gets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from efm_seg.framework.config_loader import ProjectConfigLoader
from efm_seg.parameters import StudyParams
from efm_seg.study.grid import Cell, cell_recipe, cells, checked_cell_recipe, expected_fingerprint

TRAINING = {
    "model": {"arch": "FPN", "encoder": "resnet18"},
    "epochs": 9,
    "batch_size": 4,
    "optimizer": {"lr": 5e-4, "weight_decay": 1e-4},
    "seed": 42,
}
STAGES = {
    "baseline": {"epochs": 30, "efm": {"enabled": False}},
    "efm": {"epochs": 30, "efm": {"enabled": True, "start_epoch": 5, "every": 2}},
    "finetune": {
        "epochs": 10,
        "optimizer": {"lr": 1e-4},
        "efm": {"enabled": True, "start_epoch": 1},
        "init_from": "previous",
    },
}
METHOD = {"map": {"alpha": 0.6}, "loss": {"gamma": 1.2, "topk_ratio": 0.25}}


def study(**changes) -> dict:
    block = {
        "architectures": ["FPN", "PSPNet"],
        "seeds": [3, 7],
        "epochs": {"baseline": 4, "efm": 5, "finetune": 2},
        "overrides": {"efm": {"efm": {"start_epoch": 2}}},
        "variants": {
            "full": {},
            "tuned": {
                "efm_method": {"loss": {"gamma": 0.0, "topk_ratio": 0.7}},
                "training": {"efm": {"source": "online"}},
                "finetune": {"optimizer": {"lr": 3e-4}},
            },
        },
    }
    return block | changes


def at(arch: str, seed: int, run: str, stage: str) -> Cell:
    """A cell of the project's split (no study.folds)."""
    return Cell(arch, "split", seed, run, stage)


def test_cells_cover_every_architecture_seed_and_run_in_order():
    grid = list(cells(study()))
    per_seed = ["baseline.baseline", "baseline_equal.baseline"] + [
        f"{v}.{s}" for v in ("full", "tuned") for s in ("efm", "finetune")
    ]
    assert [c.name for c in grid] == [
        f"study.{arch}.split.seed{seed}.{run}"
        for arch in ("FPN", "PSPNet")
        for seed in (3, 7)
        for run in per_seed
    ]
    assert all(Cell.from_name(c.name) == c for c in grid)


def test_folds_multiply_the_grid_and_each_cell_reads_its_folds_split():
    folds = {"t1": {"Tile 1": "test", "Tile 2": "val"}, "t2": {"Tile 2": "test", "Tile 1": "val"}}
    grid = list(cells(study(folds=folds, architectures=["FPN"], seeds=[3])))
    assert [c.name for c in grid[:2]] == [
        "study.FPN.t1.seed3.baseline.baseline",
        "study.FPN.t1.seed3.baseline_equal.baseline",
    ]
    assert {c.fold for c in grid} == {"t1", "t2"} and len(grid) == 2 * 6
    assert grid[0].split == "study.folds.t1.split"
    assert at("FPN", 3, "full", "efm").split == "split"  # no folds: the project's split
    # A fine-tuning cell starts from its own fold's EFM stage.
    assert Cell("FPN", "t2", 3, "full", "finetune").parent.parent.fold == "t2"
    assert all(Cell.from_name(c.name) == c for c in grid)


def test_extra_seeds_train_only_the_runs_they_list_after_every_runs_seeds():
    extra = {"seeds": [11], "runs": ["baseline_equal", "tuned", "baseline"]}
    block = study(architectures=["FPN"], extra_seeds=extra)
    grid = list(cells(block))
    every_run = ["baseline.baseline", "baseline_equal.baseline"] + [
        f"{v}.{s}" for v in ("full", "tuned") for s in ("efm", "finetune")
    ]
    assert [f"{c.seed}:{c.run}.{c.stage}" for c in grid] == [
        *(f"{seed}:{run}" for seed in (3, 7) for run in every_run),
        *(f"11:{run}" for run in every_run if not run.startswith("full.")),
    ]
    params = StudyParams.model_validate(block)
    assert params.run_seeds("tuned") == params.run_seeds("baseline_equal") == [3, 7, 11]
    assert params.run_seeds("full") == [3, 7] and params.all_seeds == [3, 7, 11]
    assert at("FPN", 11, "tuned", "efm").parent in grid  # its EFM stage's baseline trains


def test_parents_chain_finetune_to_its_efm_stage_and_efm_to_the_seed_baseline():
    finetune = at("PSPNet", 7, "tuned", "finetune")
    assert finetune.parent == at("PSPNet", 7, "tuned", "efm")
    assert finetune.parent.parent == at("PSPNet", 7, "baseline", "baseline")
    assert at("PSPNet", 7, "baseline_equal", "baseline").parent is None


def test_baselines_take_the_architecture_seed_and_study_epochs():
    base, overrides, method = cell_recipe(
        study(),
        at("PSPNet", 7, "baseline", "baseline"),
        TRAINING,
        STAGES["baseline"],
        METHOD,
    )
    assert base["model"] == {"arch": "PSPNet", "encoder": "resnet18"}
    assert base["seed"] == 7
    assert overrides == {"epochs": 4, "efm": {"enabled": False}}
    assert method == METHOD
    _, equal, _ = cell_recipe(
        study(),
        at("FPN", 3, "baseline_equal", "baseline"),
        TRAINING,
        STAGES["baseline"],
        METHOD,
    )
    assert equal["epochs"] == 4 + 5 + 2  # the three stages' epochs together


def test_a_variant_changes_only_what_it_names_and_only_where():
    cell = at("FPN", 3, "tuned", "efm")
    _, efm, method = cell_recipe(study(), cell, TRAINING, STAGES["efm"], METHOD)
    assert efm["efm"] == {"enabled": True, "start_epoch": 2, "every": 2, "source": "online"}
    assert efm["epochs"] == 5 and "optimizer" not in efm
    assert method == {"map": {"alpha": 0.6}, "loss": {"gamma": 0.0, "topk_ratio": 0.7}}
    _, finetune, _ = cell_recipe(
        study(), at("FPN", 3, "tuned", "finetune"), TRAINING, STAGES["finetune"], METHOD
    )
    assert finetune["optimizer"] == {"lr": 3e-4}
    assert finetune["efm"]["source"] == "online" and finetune["epochs"] == 2
    _, full, full_method = cell_recipe(
        study(), at("FPN", 3, "full", "finetune"), TRAINING, STAGES["finetune"], METHOD
    )
    assert full["optimizer"] == {"lr": 1e-4} and full_method == METHOD


ONE_RUN = {
    "efm_one_run": {
        "single_run": True,
        "training": {"efm": {"enabled": True, "start_epoch": 5, "every": 2}},
        "efm_method": {"loss": {"topk_ratio": 1.0}},
    },
    "focal": {"single_run": True, "training": {"criterion": {"name": "focal"}}},
}


def test_one_run_variants_train_as_the_equal_budget_baseline_with_their_changes():
    block = study(variants=study()["variants"] | ONE_RUN)
    grid = [c.name for c in cells(block) if c.arch == "FPN" and c.seed == 3]
    assert grid[-2:] == [
        "study.FPN.split.seed3.efm_one_run.baseline",
        "study.FPN.split.seed3.focal.baseline",
    ]
    _, equal, equal_method = cell_recipe(
        block,
        at("FPN", 3, "baseline_equal", "baseline"),
        TRAINING,
        STAGES["baseline"],
        METHOD,
    )
    _, one_run, method = cell_recipe(
        block,
        at("FPN", 3, "efm_one_run", "baseline"),
        TRAINING,
        STAGES["baseline"],
        METHOD,
    )
    # The same epochs and recipe as the equal-budget baseline; EFM from epoch 5.
    assert one_run == equal | {"efm": {"enabled": True, "start_epoch": 5, "every": 2}}
    assert method == {"map": {"alpha": 0.6}, "loss": {"gamma": 1.2, "topk_ratio": 1.0}}
    assert equal_method == METHOD
    _, focal, _ = cell_recipe(
        block, at("FPN", 3, "focal", "baseline"), TRAINING, STAGES["baseline"], METHOD
    )
    assert focal == equal | {"criterion": {"name": "focal"}}
    assert at("FPN", 3, "focal", "baseline").parent is None  # fresh weights, as the baseline


def test_fingerprints_differ_exactly_where_recipes_do():
    def fingerprint(run, stage, block=None):
        cell = at("FPN", 3, run, stage)
        return expected_fingerprint(block or study(), cell, TRAINING, STAGES[stage], METHOD)

    assert fingerprint("full", "efm") != fingerprint("tuned", "efm")
    assert fingerprint("full", "efm") == fingerprint("full", "efm")
    changed = study(variants={"full": {"efm_method": {"loss": {"gamma": 0.5}}}})
    assert fingerprint("full", "efm", changed) != fingerprint("full", "efm")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variants": {"baseline_equal": {}}}, "baseline the study always runs"),
        ({"variants": {"Top K": {}}}, "lower-case letters"),
        ({"seeds": [1, 1]}, "lists a seed twice"),
        ({"architectures": ["FPN", "NoSuchNet"]}, "'NoSuchNet' is not an smp architecture"),
        ({"variants": {"v": {"efm_method": {"loss": {"gama": 0}}}}}, "gama"),
        ({"variants": {"v": {"training": {"efm": {"source": "oracle"}}}}}, "oracle"),
        ({"overrides": {"efm": {"epochs": 0}}}, "greater than or equal to 1"),
        ({"overrides": {"stage4": {}}}, "stage4"),
        ({"seeds": []}, "at least 1"),
        (
            {"variants": {"v": {"single_run": True, "finetune": {"epochs": 3}}}},
            "single_run: a variant trained as one run has no efm or finetune stage",
        ),
        ({"variants": {"v": {"training": {"criterion": {"name": "hinge"}}}}}, "criterion.name"),
        ({"folds": {"split": {"a": "test", "b": "val"}}}, "not 'split'"),
        ({"folds": {"Tile 1": {"a": "test", "b": "val"}}}, "a fold name is lower-case"),
        ({"folds": {"t1": {"Tile 1": "test"}}}, "fold 't1' names no val group"),
        ({"folds": {"t1": {"Tile 1": "holdout"}}}, "holdout"),
        (
            {"extra_seeds": {"seeds": [7, 9], "runs": ["baseline_equal"]}},
            r"extra_seeds.seeds: \[7\] already in study.seeds \[3, 7\]",
        ),
        ({"extra_seeds": {"seeds": [9, 9], "runs": ["baseline_equal"]}}, "lists 9 twice"),
        ({"extra_seeds": {"seeds": [], "runs": ["baseline_equal"]}}, "at least 1"),
        (
            {"extra_seeds": {"seeds": [9], "runs": ["baseline_equal", "tunde"]}},
            "extra_seeds.runs: tunde is not a run of the study",
        ),
        (
            {"extra_seeds": {"seeds": [9], "runs": ["tuned", "baseline"]}},
            "must train it too: add baseline_equal",
        ),
        (
            {"extra_seeds": {"seeds": [9], "runs": ["baseline_equal", "tuned"]}},
            r"EFM stage follows its seed's baseline stage \(tuned\).*add baseline",
        ),
        ({"extra_seeds": {"seed": [9], "runs": ["baseline_equal"]}}, r"extra_seeds\.seed\b"),
    ],
)
def test_bad_grids_are_refused_naming_the_problem(changes, message):
    with pytest.raises(ValidationError, match=message):
        StudyParams.model_validate(study(**changes))


def test_a_bad_grid_stops_the_pipeline_naming_each_problem_on_one_line():
    """The study pipeline is built while Kedro finds the pipelines, before any hook checks a
    parameter: its error is the run's error, so it reads like every other parameter check."""
    from efm_seg.pipelines.study.pipeline import create_pipeline

    bad = study(confidence=2.0, seeds=[])
    with pytest.raises(ValueError) as error:
        create_pipeline(bad)
    assert not isinstance(error.value, ValidationError)
    problems = str(error.value).split("; ")
    assert (
        problems[0]
        == "study.seeds: List should have at least 1 item after validation, not 0 (got [])"
    )
    assert problems[1] == "study.confidence: Input should be less than 1 (got 2.0)"
    assert "\n" not in str(error.value) and "pydantic" not in str(error.value)


def test_a_cell_whose_efm_would_never_switch_on_is_refused():
    blocks = {
        "study": study(overrides={}),  # the EFM stage keeps its own start_epoch
        "training": TRAINING,
        "baseline.overrides": STAGES["baseline"],
        "efm.overrides": STAGES["efm"] | {"efm": {"enabled": True, "start_epoch": 6}},
        "finetune.overrides": STAGES["finetune"],
        "efm_method": METHOD,
    }
    with pytest.raises(
        ValueError, match=r"study.FPN.split.seed3.full.efm: the EFM starts at epoch 6"
    ):
        checked_cell_recipe("study.FPN.split.seed3.full.efm", blocks.__getitem__)
    blocks["efm.overrides"] = STAGES["efm"]  # start 5 of 5 epochs: on in the last one
    assert checked_cell_recipe("study.FPN.split.seed3.full.efm", blocks.__getitem__).epochs == 5


def test_the_dubai_study_is_the_shipped_grid():
    """The committed Dubai study (docs/study) is conf/base's grid: the dubai environment must not
    replace the study block, or the committed study would not be the documented one."""
    root = Path(__file__).resolve().parents[2] / "conf"
    base = yaml.safe_load((root / "base/parameters_study.yml").read_text())["study"]
    loader = ProjectConfigLoader(conf_source=str(root), base_env="base", env="dubai")
    assert loader["parameters"]["study"] == base
    assert len(StudyParams.model_validate(base).variants) == 15


TAGGED_GRID = {
    "architectures": ["FPN"],
    "seeds": [1, 2],
    "folds": {"a": {"x": "test", "y": "val"}, "b": {"y": "test", "x": "val"}},
    "epochs": {"baseline": 1, "efm": 1, "finetune": 1},
    "variants": {
        "warm": {"efm": {"init_from": "previous"}},
        "focal": {"single_run": True, "training": {"criterion": {"name": "focal"}}},
    },
}


def test_a_runs_tag_selects_its_cells_and_what_they_start_from():
    from efm_seg.pipelines.study.pipeline import create_pipeline

    pipeline = create_pipeline(TAGGED_GRID)
    warm = {n.name for n in pipeline.only_nodes_with_tags("study.run.warm").nodes}
    assert warm == {
        "study.folds.split_a", "study.folds.split_b",
        *(f"study.FPN.{f}.seed{s}.{run}.{node}" for f in "ab" for s in (1, 2)
          for run in ("baseline.baseline", "warm.efm", "warm.finetune")
          for node in ("train", "evaluate")),
    }  # fmt: skip
    focal = {n.name for n in pipeline.only_nodes_with_tags("study.run.focal").nodes}
    assert not any(".baseline.baseline." in name or "summarize" in name for name in focal)
    assert len(focal) == 2 + 2 * 2 * 2  # the fold splits; 4 cells, each trained and scored
    fold_a = {n.name for n in pipeline.only_nodes_with_tags("study.fold.a").nodes}
    assert "study.folds.split_b" not in fold_a and all(".b." not in name for name in fold_a)
    seed = pipeline.only_nodes_with_tags("study.seed.2", "study.summary").nodes
    assert {n.name for n in seed} >= {"study.summarize", "study.FPN.a.seed2.focal.baseline.train"}


def test_extra_seeds_add_their_runs_cells_to_the_pipeline_and_its_convergence_check():
    from efm_seg.pipelines.study.pipeline import create_pipeline

    extra = {"seeds": [3], "runs": ["baseline_equal", "focal"]}
    pipeline = create_pipeline(TAGGED_GRID | {"extra_seeds": extra})
    seed3 = {
        n.name for n in pipeline.only_nodes_with_tags("study.seed.3").nodes
        if n.name.endswith(".train")
    }  # fmt: skip
    assert seed3 == {
        f"study.FPN.{f}.seed3.{run}.baseline.train"
        for f in "ab"
        for run in ("baseline_equal", "focal")
    }
    nodes = {node.name: node for node in pipeline.nodes}
    histories = [i for i in nodes["study.check_convergence"].inputs if i.endswith(".history")]
    assert histories == [
        f"study.FPN.{f}.seed{s}.baseline_equal.baseline.history" for f in "ab" for s in (1, 2, 3)
    ]
    scored = [i for i in nodes["study.summarize"].inputs if i.endswith(".scores")]
    assert len(scored) == 2 * 2 * 5 + 2 * 2  # seeds 1-2: 5 cells a fold; seed 3: 2
    assert "study.FPN.a.seed3.focal.baseline.scores" in scored
