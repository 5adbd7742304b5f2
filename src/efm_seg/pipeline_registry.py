"""The project's pipelines: one package each under ``pipelines/``, found automatically."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from efm_seg.pipelines.predict.pipeline import MODEL_INPUT, create_model_pipeline

# Pipelines made of other registered pipelines; the default run includes their parts once.
COMPOSITES = {"training"}
# Pipelines a plain `kedro run` leaves out: the study trains dozens of models; predict needs
# scenes to label (predict_root); export writes a model for tools outside the project.
NOT_DEFAULT = {"study", "predict", "export"}


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline package; ``__default__`` chains them all.

    ``training`` is the three training stages together (``baseline``, ``efm``, ``finetune``);
    with the ``mlflow`` extra it logs the MLflow model (:func:`with_mlflow_model`).
    ``study`` (a grid of runs, ``params:study``) runs only when asked for.

    Kedro loads only the packages named by ``--pipelines`` (comma-separated, e.g.
    ``--pipelines ingestion,preprocessing,split``), so composites are written on the command
    line rather than registered here. The data dependencies (catalog entries) order the nodes.

    Returns:
        A mapping from pipeline name to ``Pipeline``.
    """
    pipelines = find_pipelines(raise_errors=True)
    left_out = COMPOSITES | NOT_DEFAULT | {"__default__"}
    pipelines["__default__"] = sum(
        (p for name, p in pipelines.items() if name not in left_out),
        Pipeline([]),
    )
    if "training" in pipelines:
        pipelines["training"] = with_mlflow_model(pipelines["training"])
    return pipelines


def with_mlflow_model(training: Pipeline) -> Pipeline:
    """``training`` as kedro-mlflow's ``PipelineML`` (the ``mlflow`` extra): with tracking on,
    ``kedro run --pipelines training`` logs the predict pipeline, with the checkpoint it trained,
    as an MLflow model (``mlflow.pyfunc.load_model(uri).predict(images)``); without the extra,
    ``training`` as it is. (``kedro_mlflow.pipeline`` imports no mlflow.)"""
    try:
        from kedro_mlflow.pipeline import pipeline_ml_factory
    except ImportError:
        return training
    return pipeline_ml_factory(
        training=training,
        inference=create_model_pipeline("finetune.best_checkpoint"),
        input_name=MODEL_INPUT,
        # No signature inferred from an example input: images have any size.
        log_model_kwargs={"name": "model", "signature": None},
    )
