"""Preprocessing pipeline, in the namespace ``preprocessing``: manifest + raw folder → encoded
samples and their index."""

from kedro.pipeline import Node, Pipeline

from efm_seg.pipelines.preprocessing.nodes import encode_samples, index_samples


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=encode_samples,
                inputs=["raw_dataset", "manifest", "params:dataset", "params:preprocessing"],
                outputs="encoded_samples",
                name="encode_samples",
            ),
            Node(
                func=index_samples,
                inputs="encoded_samples",
                outputs="encoded_index",
                name="index_samples",
            ),
        ],
        namespace="preprocessing",
        prefix_datasets_with_namespace=False,
    )
