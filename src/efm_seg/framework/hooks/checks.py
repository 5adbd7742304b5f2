"""Pre-run checks: what no single parameter block can say, refused before a run writes anything.

Kedro validates each parameter block a pipeline reads when the session starts. These checks span
several blocks, or the data already on disk:

- each training stage's (and study cell's) architecture takes the samples it would get
  (``preprocessing.size``, or the store's size when preprocessing is not part of the run), and
  the equal-budget baseline's overrides leave its epochs to the stages';
- every ``--load-versions`` version exists, and so does everything else the run reads from
  earlier runs of its environment (the sample store, the split, a previous stage's checkpoint):
  Kedro would fail only when the node reading it runs, after earlier nodes have saved. The
  message names the data root the run reads, so a run in another environment than the one that
  made the data says so at once.
"""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset

from efm_seg.basics.names import EQUAL_BUDGET, STAGES, TRAINING_TAG

# The library (parameters, pandas, the study's grid) is imported when a check runs: every
# `kedro` command imports the hooks, and `kedro --help` needs none of it.


class PreRunChecksHook:
    """Runs the checks of this module before every run's first node."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        check_input_sizes(pipeline, catalog)
        check_load_versions(catalog, run_params.get("load_versions"))
        check_stored_inputs(pipeline, catalog, run_params)


def stage_recipes(pipeline, catalog) -> dict[str, Any]:
    """The recipe of every training stage (or study cell) of ``pipeline``, by its namespace."""
    from efm_seg.parameters import equal_budget_overrides, stage_recipe
    from efm_seg.study.grid import checked_cell_recipe

    # A training node's namespace is its stage (or study cell): baseline,
    # study.FPN.split.seed0.full.efm
    stages = sorted(n.namespace for n in pipeline.nodes if TRAINING_TAG in n.tags and n.namespace)
    loaded: dict[str, Any] = {}

    def params(name: str) -> Any:  # each block once: a study has hundreds of cells
        if name not in loaded:
            loaded[name] = catalog.load(f"params:{name}")
        return loaded[name]

    def overrides(stage: str) -> Any:  # the equal-budget baseline's follow the stages' epochs
        if stage != EQUAL_BUDGET:
            return params(f"{stage}.overrides")
        stage_overrides = {name: params(f"{name}.overrides") for name in STAGES}
        return equal_budget_overrides(
            params("training"), stage_overrides, params(f"{stage}.overrides")
        )

    return {
        stage: checked_cell_recipe(stage, params)
        if stage.startswith("study.")
        else stage_recipe(params("training"), overrides(stage))
        for stage in stages
    }


def check_input_sizes(pipeline, catalog) -> None:
    """Refuse a run whose training stages cannot take the samples they would get.

    Without it, a ``kedro run`` would preprocess (replacing the store) and only then find that
    FPN needs sides divisible by 32.
    """
    recipes = stage_recipes(pipeline, catalog)
    if not recipes:
        return
    # torch and smp (model shapes): imported when a run trains, never when the CLI starts.
    from efm_seg.basics.mappings import as_mapping
    from efm_seg.data.samples import SampleStore
    from efm_seg.loading import sample_shape
    from efm_seg.models import ModelSpec, check_input_size

    if "encoded_samples" in pipeline.all_outputs():
        size = as_mapping(catalog.load("params:preprocessing"))["size"]
        shape, setting = (size, size), "preprocessing.size"
    else:
        try:
            store = catalog.load("encoded_samples")
        except Exception:  # no store yet: the training node says so itself
            return
        if not isinstance(store, SampleStore) or not store.ids:
            return
        shape, setting = sample_shape(store, list(store.ids)), "preprocessing.size (the store's)"
    num_classes = len(as_mapping(catalog.load("params:dataset"))["classes"])
    for stage, recipe in recipes.items():
        spec = ModelSpec(recipe.model.arch, recipe.model.encoder, num_classes)
        try:
            check_input_size(spec, *shape, setting=setting)
        except ValueError as exc:
            raise ValueError(f"{stage} stage: {exc}") from None


class LoadVersionError(ValueError):
    """``--load-versions`` names a version that was never saved."""


def check_load_versions(catalog, load_versions: dict[str, str] | None) -> None:
    """Refuse, before the run writes anything, a ``--load-versions`` version that does not exist.

    Kedro itself would only fail when the node reading it runs, after earlier nodes have saved.
    """
    for name, version in sorted((load_versions or {}).items()):
        try:
            dataset = catalog.get(name, fallback_to_runtime_pattern=True)
        except Exception:  # Kedro refuses unknown names itself, with its own message
            continue
        if not isinstance(dataset, AbstractVersionedDataset):
            continue
        if dataset.exists():
            continue
        try:
            saved = dataset.list_versions(full_path=False)
        except Exception:  # nothing saved at all
            saved = []
        raise LoadVersionError(
            f"--load-versions {name}:{version}: there is no such version of {name} "
            f"({dataset._filepath}); saved versions: {', '.join(sorted(saved)) or 'none'}. "
            "Nothing was run"
        )


def check_stored_inputs(pipeline, catalog, run_params: dict[str, Any]) -> None:
    """Refuse a run that reads stored outputs of earlier runs (the sample store, the split, a
    stage's checkpoint) that no earlier run of its environment wrote, naming each.

    Stored outputs are the versioned datasets and the sample store: the raw dataset (the demo's
    is generated when first read), the scenes to predict and a stage's resumable state are not.
    """
    from efm_seg.framework.datasets.sample_store import SampleStoreDataset

    explicit = set(run_params.get("load_versions") or {})
    missing: dict[str, str] = {}
    for name in sorted(pipeline.inputs() - explicit):
        if name.startswith("params:") or name == "parameters":
            continue
        try:
            dataset = catalog.get(name, fallback_to_runtime_pattern=True)
            stored = isinstance(dataset, AbstractVersionedDataset | SampleStoreDataset)
            if not stored or dataset.exists():
                continue
        except Exception:  # cannot tell: the node that reads it says what is wrong
            continue
        where = dataset._describe()
        missing[name] = str(where.get("filepath") or where.get("path") or "")
    if not missing:
        return
    listed = "; ".join(f"{name} ({path})" for name, path in missing.items())
    env = run_params.get("env") or "local"
    raise MissingInputError(
        f"this run reads what earlier runs in environment {env} write, and nothing is saved yet "
        f"for: {listed}. Run the pipelines that write them first, in the same environment "
        f"(kedro run --env {env} --pipelines ...). Nothing was run"
    )


class MissingInputError(ValueError):
    """A run reads stored data that no earlier run of its environment wrote."""
