"""Project settings (Kedro reads this module at start-up)."""

import os

from efm_seg.config_loader import ProjectConfigLoader
from efm_seg.provenance import RunInfoHook
from efm_seg.run_lock import RunLockHook
from efm_seg.study.session import StudyGridHook
from efm_seg.tracking import TrackingHook

# Nothing phones home: the project's .telemetry file already withholds consent; this also
# covers a session started from another working directory.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

# --params a.b.c=v changes exactly a.b.c, in every environment (see config_loader.py).
CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}

# One writing run per data root (data/<env>): a second is refused, naming the first. Every run
# gets its id, code and package versions into the catalog's `run_info` (provenance.py).
# The study pipeline's grid is the running session's `study` block (study/session.py).
# MLflow tracking (the `mlflow` extra): kedro-mlflow's hook runs inside TrackingHook, which
# adds the stages' nested runs and artifacts and obeys params:tracking.enabled (tracking.py).
HOOKS = (RunLockHook(), RunInfoHook(), StudyGridHook(), TrackingHook())
# (Its distribution is named kedro_mlflow; the other spelling in case a release changes it.)
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")
