"""Predict pipeline, in the namespace ``predict`` (not part of the default run):
``kedro run --pipelines predict --params predict_root=DIR`` labels every scene in DIR with the
checkpoint of ``predict.stage`` (catalog ``predict.checkpoint``; ``--load-versions
predict.checkpoint:<run id>`` for an older one) and writes ``predict.predictions``."""

from kedro.pipeline import Node, Pipeline

from efm_seg.pipelines.predict.nodes import predict_scenes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=predict_scenes,
                inputs=["predict_scenes", "predict.checkpoint", "params:dataset", "params:predict"],
                outputs="predict.predictions",
                name="predict_scenes",
            )
        ],
        namespace="predict",
        prefix_datasets_with_namespace=False,
    )
