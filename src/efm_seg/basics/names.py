"""Names shared across the package: the training stages and the tag of the nodes that train."""

STAGES: tuple[str, ...] = ("baseline", "efm", "finetune")
"""The paper's three training stages, in the order they run."""

TRAINING_TAG = "training"
"""The tag of every node that trains a model (``kedro run --tags training``; the run checks)."""
