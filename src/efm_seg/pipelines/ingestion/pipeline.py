"""Ingestion pipeline: raw folder → validated manifest."""

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
        ]
    )
