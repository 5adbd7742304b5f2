"""Names shared across the package: the training stages, the equal-budget reference and the tag
of the nodes that train."""

STAGES: tuple[str, ...] = ("baseline", "efm", "finetune")
"""The paper's three training stages, in the order they run."""

EQUAL_BUDGET = "baseline_equal"
"""The equal-budget reference: the baseline's recipe in one run of as many epochs as the three
stages together, so that a stage's gain is not the extra training alone."""

MODELS: tuple[str, ...] = (*STAGES, EQUAL_BUDGET)
"""What a run trains, evaluates and reports: the three stages, then the reference."""

TRAINING_TAG = "training"
"""The tag of every node that trains a model (``kedro run --tags training``; the run checks)."""
