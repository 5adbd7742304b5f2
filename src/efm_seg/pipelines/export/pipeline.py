"""Export pipeline, in the namespace ``export`` (not part of the default run):
``kedro run --pipelines export`` writes the best checkpoint of ``export.stage`` (catalog
``export.checkpoint``; ``--load-versions export.checkpoint:<run id>`` for an older one) as
``export.onnx_model``."""

from kedro.pipeline import Node, Pipeline

from efm_seg.pipelines.export.nodes import export_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=export_model,
                inputs=["export.checkpoint", "params:dataset", "params:export"],
                outputs="export.onnx_model",
                name="export_onnx",
            )
        ],
        namespace="export",
        prefix_datasets_with_namespace=False,
    )
