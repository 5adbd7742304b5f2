"""Project settings (Kedro reads this module at start-up)."""

import os
import warnings

from efm_seg.config_loader import ProjectConfigLoader
from efm_seg.provenance import RunInfoHook
from efm_seg.run_lock import RunLockHook
from efm_seg.study.session import StudyGridHook

# Nothing phones home: the project's .telemetry file already withholds consent; this also
# covers a session started from another working directory.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

# The pipelines name datasets `<namespace>.<name>` on purpose (the training stages' outputs,
# e.g. `baseline.best_checkpoint`, read by evaluation and reporting): Kedro's one-time warning
# about '.' in dataset names is silenced for nodes made in efm_seg.pipelines, and only there.
warnings.filterwarnings(
    "ignore",
    message=r"One or more dataset names contain '\.' characters",
    category=UserWarning,
    module=r"efm_seg\.pipelines\.",
)

# --params a.b.c=v changes exactly a.b.c, in every environment (see config_loader.py).
CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}

# One writing run per data root (data/<env>): a second is refused, naming the first. Every run
# gets its id, code and package versions into the catalog's `run_info` (provenance.py).
# The study pipeline's grid is the running session's `study` block (study/session.py).
HOOKS = (RunLockHook(), RunInfoHook(), StudyGridHook())
