"""Ingestion pipeline, in the namespace ``ingestion``: raw folder → validated manifest.

The namespace groups the node (kedro-viz, Airflow tasks) without renaming its datasets.
"""

from kedro.pipeline import Node, Pipeline

from efm_seg.pipelines.ingestion.nodes import build_manifest


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=build_manifest,
                inputs=["raw_dataset", "params:dataset", "params:ingestion"],
                outputs="manifest",
                name="build_manifest",
            )
        ],
        namespace="ingestion",
        prefix_datasets_with_namespace=False,
    )
