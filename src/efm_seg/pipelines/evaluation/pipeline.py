"""Evaluation pipeline: one evaluation node per stage (a namespace each), then one table.

``<stage>.test_metrics`` (overall scores, without and with TTA, with the checkpoint's lineage),
``<stage>.test_per_class`` and ``<stage>.test_predictions`` per stage; ``evaluation_metrics``
and ``evaluation_per_class`` put the stages side by side. ``check_lineage`` runs first: the
three checkpoints must share one lineage (``efm_seg.lineage``), or nothing is scored.
"""

from kedro.pipeline import Node, Pipeline

from efm_seg.pipelines.evaluation.nodes import check_lineage, combine_stages, stage_evaluator

STAGES = ("baseline", "efm", "finetune")


def create_stage_evaluation(stage: str) -> Pipeline:
    """Evaluate ``<stage>.best_checkpoint``; outputs land under the stage's namespace."""
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
                    "lineage": "evaluation_lineage",
                    "run_info": "run_info",
                },
                outputs=["test_metrics", "test_per_class", "test_predictions"],
                name="evaluate",
            )
        ]
    )
    return Pipeline(
        template,
        namespace=stage,
        inputs={"encoded_samples", "split", "evaluation_lineage", "run_info"},
        parameters={"params:dataset", "params:evaluation"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    # First, before any stage is scored: do the three checkpoints share one lineage?
    check = Pipeline(
        [
            Node(
                func=check_lineage,
                inputs={
                    **{f"{s}_checkpoint": f"{s}.best_checkpoint" for s in STAGES},
                    "samples": "encoded_samples",
                    "split": "split",
                    "dataset": "params:dataset",
                },
                outputs="evaluation_lineage",
                name="check_lineage",
            )
        ]
    )
    per_stage = sum((create_stage_evaluation(stage) for stage in STAGES), Pipeline([]))
    combine = Pipeline(
        [
            Node(
                func=combine_stages,
                inputs=[f"{s}.test_metrics" for s in STAGES]
                + [f"{s}.test_per_class" for s in STAGES],
                outputs=["evaluation_metrics", "evaluation_per_class"],
                name="combine_stages",
            )
        ]
    )
    return check + per_stage + combine
