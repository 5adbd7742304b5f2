"""Warnings that are not the user's to act on, silenced narrowly (each by its message and, where
it has one, its source), as early as possible: when the package is imported, which Kedro does
when it finds the project and before it loads plugins such as kedro-mlflow's commands."""

import warnings


def install() -> None:
    # The pipelines name datasets `<namespace>.<name>` on purpose (the training stages' outputs,
    # e.g. `baseline.best_checkpoint`, read by evaluation and reporting): Kedro's one-time warning
    # about '.' in dataset names is silenced for nodes made in efm_seg.pipelines, and only there.
    warnings.filterwarnings(
        "ignore",
        message=r"One or more dataset names contain '\.' characters",
        category=UserWarning,
        module=r"efm_seg\.pipelines\.",
    )

    # kedro-mlflow registers its resolver with OmegaConf's deprecated call, and importing it makes
    # MLflow warn about model classes the project does not define: not the user's to act on.
    warnings.filterwarnings(
        "ignore", message=r"register_new_resolver\(\) is deprecated", module=r"kedro_mlflow\."
    )
    # That MLflow warning is raised under MLflow's own catch_warnings(simplefilter("once")),
    # which overrides any filter, whenever kedro-mlflow's commands load (every `kedro` command):
    # it is dropped where warnings are shown instead, and nothing else is.
    if not getattr(warnings.showwarning, "_efm_seg", False):
        warnings.showwarning = _without_mlflow_type_hint_notice(warnings.showwarning)


def _without_mlflow_type_hint_notice(show):
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if "Add type hints to the `predict` method" in str(message) and "mlflow" in filename:
            return None
        return show(message, category, filename, lineno, file, line)

    showwarning._efm_seg = True
    return showwarning
