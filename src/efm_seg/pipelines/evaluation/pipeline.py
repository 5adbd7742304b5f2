"""Evaluation pipeline, in the namespace ``evaluation``.

``evaluation.check_lineage`` runs first: the checkpoints of the three stages and of the
equal-budget baseline (``baseline_equal``) must share one lineage (``efm_seg.basics.lineage``),
or nothing is scored. Then one node per model (``evaluation.<stage>.evaluate_<stage>``) writes
``<stage>.test_metrics`` (overall scores, without and with TTA, with the checkpoint's lineage),
``<stage>.test_per_class`` and ``<stage>.test_predictions``; ``evaluation.combine_stages`` puts
them side by side in ``evaluation_metrics`` and ``evaluation_per_class``.

The per-stage nodes live under ``evaluation.<stage>`` rather than the training namespaces
``<stage>``: the lineage check sits between training and scoring, and a namespace must not be
left and re-entered along a path of the DAG (kedro-viz and Airflow group nodes by namespace).
"""

from kedro.pipeline import Node, Pipeline

from efm_seg.basics.names import MODELS
from efm_seg.pipelines.evaluation.nodes import check_lineage, combine_stages, stage_evaluator

STAGE_OUTPUTS = ("test_metrics", "test_per_class", "test_predictions")
SHARED_INPUTS = {"encoded_samples", "split", "run_info"}
PARAMETERS = {"params:dataset", "params:evaluation"}


def create_stage_evaluation(stage: str) -> Pipeline:
    """Score ``<stage>.best_checkpoint``; the outputs are ``<stage>.test_*``."""
    template = Pipeline(
        [
            Node(
                func=stage_evaluator(stage),
                inputs={
                    "checkpoint": "best_checkpoint",
                    "samples": "encoded_samples",
                    "split": "split",
                    "dataset": "params:dataset",
                    "evaluation": "params:evaluation",
                    "lineage": "lineage",
                    "run_info": "run_info",
                },
                outputs=list(STAGE_OUTPUTS),
                name=f"evaluate_{stage}",
            )
        ]
    )
    return Pipeline(
        template,
        namespace=stage,
        inputs={"best_checkpoint": f"{stage}.best_checkpoint", "lineage": "lineage"}
        | {name: name for name in SHARED_INPUTS},
        outputs={name: f"{stage}.{name}" for name in STAGE_OUTPUTS},
        parameters=PARAMETERS,
    )


def create_pipeline(**kwargs) -> Pipeline:
    check = Pipeline(
        [
            Node(
                func=check_lineage,
                inputs={
                    **{f"{s}_checkpoint": f"{s}.best_checkpoint" for s in MODELS},
                    "samples": "encoded_samples",
                    "split": "split",
                    "dataset": "params:dataset",
                },
                outputs="lineage",
                name="check_lineage",
            )
        ]
    )
    per_stage = sum((create_stage_evaluation(stage) for stage in MODELS), Pipeline([]))
    combine = Pipeline(
        [
            Node(
                func=combine_stages,
                inputs=[f"{s}.test_metrics" for s in MODELS]
                + [f"{s}.test_per_class" for s in MODELS],
                outputs=["evaluation_metrics", "evaluation_per_class"],
                name="combine_stages",
            )
        ]
    )
    stage_names = {f"{s}.{name}" for s in MODELS for name in ("best_checkpoint", *STAGE_OUTPUTS)}
    return Pipeline(
        check + per_stage + combine,
        namespace="evaluation",
        inputs=SHARED_INPUTS | {f"{s}.best_checkpoint" for s in MODELS},
        outputs=(stage_names - {f"{s}.best_checkpoint" for s in MODELS})
        | {"evaluation_metrics", "evaluation_per_class"},
        parameters=PARAMETERS,
    )
