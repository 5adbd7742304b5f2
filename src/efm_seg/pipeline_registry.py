"""The project's pipelines: one package each under ``pipelines/``, found automatically."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Pipelines made of other registered pipelines; the default run includes their parts once.
COMPOSITES = {"training"}
# Pipelines a plain `kedro run` leaves out: the study trains dozens of models; predict needs
# scenes to label (predict_root); export writes a model for tools outside the project.
NOT_DEFAULT = {"study", "predict", "export"}


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline package; ``__default__`` chains them all.

    ``training`` is the three training stages together (``baseline``, ``efm``, ``finetune``).
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
    return pipelines
