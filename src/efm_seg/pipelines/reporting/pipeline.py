"""Reporting pipeline, in the namespace ``reporting``: lineage check and provenance → tables →
figures → report, all under ``data/<env>/08_reporting``.

``collect_provenance`` runs first and every other node reads its output, so a report whose
inputs do not share one lineage is refused before anything is written.
"""

from kedro.pipeline import Node, Pipeline

from efm_seg.basics.names import MODELS, STAGES
from efm_seg.pipelines.reporting.nodes import (
    collect_provenance,
    make_figures,
    make_report,
    make_tables,
)


def create_pipeline(**kwargs) -> Pipeline:
    per_stage = {
        **{f"{s}_record": f"{s}.training_record" for s in MODELS},
        **{f"{s}_history": f"{s}.history" for s in MODELS},
        **{f"{s}_snapshots": f"{s}.efm_snapshots" for s in MODELS},
        **{f"{s}_predictions": f"{s}.test_predictions" for s in MODELS},
    }
    # The figures show every model's predictions, and the curves and EFM maps of the stages.
    figure_inputs = {
        name: dataset
        for name, dataset in per_stage.items()
        if name.endswith("_predictions")
        or (name.rsplit("_", 1)[0] in STAGES and "_record" not in name)
    }
    return Pipeline(
        [
            Node(
                func=collect_provenance,
                inputs={
                    "evaluation_metrics": "evaluation_metrics",
                    **per_stage,
                    "samples": "encoded_samples",
                    "dataset": "params:dataset",
                    "run_info": "run_info",
                },
                outputs="report_provenance",
                name="collect_provenance",
            ),
            Node(
                func=make_tables,
                inputs=["evaluation_metrics", "evaluation_per_class", "report_provenance"],
                outputs=["stage_table", "stage_table_no_tta", "per_class_table", "tables_markdown"],
                name="make_tables",
            ),
            Node(
                func=make_figures,
                inputs={
                    **figure_inputs,
                    "per_class": "evaluation_per_class",
                    "samples": "encoded_samples",
                    "provenance": "report_provenance",
                    "dataset": "params:dataset",
                    "reporting": "params:reporting",
                },
                outputs=["report_figures", "report_figure_png"],
                name="make_figures",
            ),
            Node(
                func=make_report,
                inputs={
                    "stage_table": "stage_table",
                    "stage_table_no_tta": "stage_table_no_tta",
                    "per_class_table": "per_class_table",
                    "figure_png": "report_figure_png",
                    "provenance": "report_provenance",
                    "dataset": "params:dataset",
                    "reporting": "params:reporting",
                },
                outputs="report_html",
                name="make_report",
            ),
        ],
        namespace="reporting",
        prefix_datasets_with_namespace=False,
    )
