"""Split pipeline, in the namespace ``split``: encoded sample index → split table."""

from kedro.pipeline import Node, Pipeline

from efm_seg.pipelines.split.nodes import split_samples


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=split_samples,
                inputs=["encoded_index", "params:split"],
                outputs="split",
                name="split_samples",
            )
        ],
        namespace="split",
        prefix_datasets_with_namespace=False,
    )
