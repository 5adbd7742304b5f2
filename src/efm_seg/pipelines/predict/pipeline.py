"""Predict pipeline, in the namespace ``predict`` (not part of the default run):
``kedro run --pipelines predict --params predict_root=DIR`` labels every scene in DIR with the
checkpoint of ``predict.stage`` (catalog ``predict.checkpoint``; ``--load-versions
predict.checkpoint:<run id>`` for an older one) and writes ``predict.predictions``.

:func:`create_model_pipeline` is its in-memory twin, the inference pipeline of the MLflow model
that ``kedro run --pipelines training`` logs (``pipeline_registry``)."""

from kedro.pipeline import Node, Pipeline

from efm_seg.pipelines.predict.nodes import label_images, predict_scenes

# The MLflow model's input (the images given to its predict) and output (their ids).
MODEL_INPUT = "predict.images"
MODEL_OUTPUT = "predict.labels"


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


def create_model_pipeline(checkpoint: str = "finetune.best_checkpoint") -> Pipeline:
    """The MLflow model's inference pipeline: :data:`MODEL_INPUT` (``uint8`` images
    ``(H, W, bands)`` or ``(N, H, W, bands)``) labelled with the training output ``checkpoint``,
    as ``predict`` labels scenes, into :data:`MODEL_OUTPUT` (the dataset's ids)."""
    return Pipeline(
        [
            Node(
                func=label_images,
                inputs=[MODEL_INPUT, checkpoint, "params:dataset", "params:predict"],
                outputs=MODEL_OUTPUT,
                name="label_images",
            )
        ]
    )
