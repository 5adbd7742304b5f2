"""Project settings (Kedro reads this module at start-up).

Everything imported here is light (no torch, smp, mlflow or rasterio): every ``kedro`` command,
``kedro --help`` included, imports it.
"""

import os

from efm_seg.framework.config_loader import ProjectConfigLoader
from efm_seg.framework.hooks.checks import PreRunChecksHook
from efm_seg.framework.hooks.lock import RunLockHook
from efm_seg.framework.hooks.run_info import RunInfoHook
from efm_seg.framework.hooks.study_grid import StudyGridHook
from efm_seg.framework.hooks.tracking import TrackingHook

# Nothing phones home: the project's .telemetry file already withholds consent; this also
# covers a session started from another working directory.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

# --params a.b.c=v changes exactly a.b.c, in every environment; each loader resolves with its
# own environment, whatever other loaders the process holds (framework/config_loader.py).
CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}

# One hook per job (efm_seg/framework/hooks/):
# - PreRunChecksHook: what spans several parameter blocks (input sizes) or the disk
#   (--load-versions), refused before anything is written;
# - RunLockHook: one writing run per data root (data/<env>), taken before the other hooks'
#   pre-run work and given back if any refuses the run;
# - RunInfoHook: the run's id, code, package versions and machine, into the catalog's `run_info`;
# - StudyGridHook: the study pipeline's grid from the running session's `study` block;
# - TrackingHook: MLflow tracking (the `mlflow` extra) through kedro-mlflow's hook, with the
#   stages' nested runs and artifacts; obeys params:tracking.enabled.
HOOKS = (RunLockHook(), RunInfoHook(), StudyGridHook(), PreRunChecksHook(), TrackingHook())
# (Its distribution is named kedro_mlflow; the other spelling in case a release changes it.)
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")
