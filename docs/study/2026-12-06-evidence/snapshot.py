"""Keep the evidence study's finished cells in the repository, so that a lost machine costs only
the cells under way (one machine was lost on 2026-12-06 with every trained cell: README,
"Progress").

Copies the latest version of each finished cell's ``scores.csv`` and ``history.csv`` (a cell is
finished once it is scored) into ``cells/<arch>/<fold>/seed<s>/<run>/<stage>/`` here, and the
invocation log into ``cells/study_invocations.log``; a cell trained again replaces its files. The
checkpoints (about 50 MB a cell) stay on the machine: what is kept is what the answer and the
write-up are computed from (the scores with their recipe fingerprints and lineage, the
histories with each epoch's processor and seconds). It prints only how many cells it kept.
These are test scores of an unfinished grid: they are not read before it completes.

    .venv/bin/python docs/study/2026-12-06-evidence/snapshot.py [DATA_ROOT] [DEST]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA_ROOT = HERE.parents[2] / "data" / "evidence"
FILES = ("scores.csv", "history.csv")
LOG = "study_invocations.log"


def latest(dataset: Path) -> Path | None:
    """The newest version of a versioned dataset (a folder of timestamped versions, each
    holding a file of the dataset's name), or None."""
    versions = sorted(v / dataset.name for v in dataset.glob("*") if (v / dataset.name).is_file())
    return versions[-1] if versions else None


def main(data_root: Path, dest: Path) -> int:
    study = data_root / "07_model_output" / "study"
    kept = 0
    for scores in sorted(study.glob("*/*/*/*/*/scores.csv")):
        cell = scores.parent
        sources = {name: latest(cell / name) for name in FILES}
        if any(source is None for source in sources.values()):
            continue  # not finished
        target = dest / "cells" / cell.relative_to(study)
        target.mkdir(parents=True, exist_ok=True)
        for name, source in sources.items():
            shutil.copyfile(source, target / name)
        kept += 1
    if (data_root / LOG).is_file():
        (dest / "cells").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_root / LOG, dest / "cells" / LOG)
    print(f"kept {kept} finished cells in {dest / 'cells'}")
    return 0


if __name__ == "__main__":
    arguments = [Path(a) for a in sys.argv[1:3]]
    sys.exit(main(*arguments, *[DATA_ROOT, HERE][len(arguments) :]))
