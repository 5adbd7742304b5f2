"""The training pipeline template. The three stages, and the equal-budget baseline, are this
pipeline under a namespace:

- ``baseline``: the paper's stage 1, no EFM;
- ``efm``: stage 2, EFM-weighted loss (starts from the same seeded initialisation as the
  baseline, or from the baseline's best checkpoint with ``init_from: previous``);
- ``finetune``: stage 3, continues from the EFM stage's best checkpoint;
- ``baseline_equal``: the baseline's recipe in one run of as many epochs as the three stages
  together (it also reads their ``overrides``), the reference that says whether the stages'
  gain is more than their extra training.

Each stage reads its own ``params:<stage>.overrides`` and writes ``<stage>.best_checkpoint``,
``<stage>.history``, ``<stage>.efm_snapshots`` and ``<stage>.training_record`` (the checkpoint's
lineage and recipe, without the weights); the data, ``run_info`` and the shared ``training``,
``efm_method`` and ``dataset`` parameters are common to all.
"""

from kedro.pipeline import Node, Pipeline

from efm_seg.basics.names import EQUAL_BUDGET, STAGES, TRAINING_TAG
from efm_seg.pipelines.training.nodes import stage_trainer, train_baseline_equal

SHARED_INPUTS = {"encoded_samples", "split", "run_info"}
SHARED_PARAMETERS = {"params:dataset", "params:efm_method", "params:training"}
# Node names that read alone (kedro-viz shows them without their namespace).
NODE_NAMES = {
    "baseline": "train_baseline",
    "efm": "train_with_efm",
    "finetune": "finetune_with_efm",
}


def create_stage_pipeline(stage: str, init_from: str | None = None) -> Pipeline:
    """The training pipeline of one stage.

    Args:
        stage: The namespace (``baseline``, ``efm`` or ``finetune``).
        init_from: The catalog entry of the checkpoint this stage may start from (e.g.
            ``baseline.best_checkpoint``), wired as its ``init_checkpoint`` input; whether it is
            used is the stage's ``init_from`` parameter.
    """
    inputs = {
        "samples": "encoded_samples",
        "split": "split",
        "dataset": "params:dataset",
        "efm_method": "params:efm_method",
        "training": "params:training",
        "overrides": "params:overrides",
        "run_info": "run_info",
        "training_state": "training_state",
    }
    parameters = set(SHARED_PARAMETERS)
    if init_from is not None:
        inputs["init_checkpoint"] = "init_checkpoint"
    if stage == EQUAL_BUDGET:  # its epochs are the stages' together
        inputs.pop("init_checkpoint", None)
        inputs |= {f"{s}_overrides": f"params:{s}.overrides" for s in STAGES}
        parameters |= {f"params:{s}.overrides" for s in STAGES}
    template = Pipeline(
        [
            Node(
                func=train_baseline_equal if stage == EQUAL_BUDGET else stage_trainer(stage),
                inputs=inputs,
                outputs=["best_checkpoint", "history", "efm_snapshots", "training_record"],
                name=NODE_NAMES.get(stage, f"train_{stage}"),
                tags=[TRAINING_TAG],
            )
        ]
    )
    return Pipeline(
        template,
        namespace=stage,
        inputs={name: name for name in SHARED_INPUTS}
        | ({"init_checkpoint": init_from} if init_from else {}),
        parameters=parameters,
    )


def create_pipeline(**kwargs) -> Pipeline:
    """``kedro run --pipelines training``: the three stages in order and the equal-budget
    baseline (the same as the sum of their pipelines)."""
    return (
        create_stage_pipeline("baseline")
        + create_stage_pipeline("efm", init_from="baseline.best_checkpoint")
        + create_stage_pipeline("finetune", init_from="efm.best_checkpoint")
        + create_stage_pipeline(EQUAL_BUDGET)
    )
