"""Reporting pipeline: tables → figures → report, all under ``data/<env>/08_reporting``."""

from kedro.pipeline import Node, Pipeline

from efm_seg.pipelines.reporting.nodes import make_figures, make_report, make_tables

STAGES = ("baseline", "efm", "finetune")


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=make_tables,
                inputs=["evaluation_metrics", "evaluation_per_class"],
                outputs=["stage_table", "stage_table_no_tta", "per_class_table", "tables_markdown"],
                name="make_tables",
            ),
            Node(
                func=make_figures,
                inputs={
                    **{f"{s}_history": f"{s}.history" for s in STAGES},
                    **{f"{s}_snapshots": f"{s}.efm_snapshots" for s in STAGES},
                    **{f"{s}_predictions": f"{s}.test_predictions" for s in STAGES},
                    "per_class": "evaluation_per_class",
                    "samples": "encoded_samples",
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
                    "dataset": "params:dataset",
                    "preprocessing": "params:preprocessing",
                    "training": "params:training",
                    "efm_method": "params:efm_method",
                    "evaluation": "params:evaluation",
                    "reporting": "params:reporting",
                    **{f"{s}_overrides": f"params:{s}.overrides" for s in STAGES},
                },
                outputs="report_html",
                name="make_report",
            ),
        ]
    )
