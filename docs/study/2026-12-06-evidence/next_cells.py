"""The evidence study's cells of some runs still to train, one per line, in grid order.

Kedro runs every training node of an invocation before any scoring node (they form one layer of
the pipeline), so a session that ends mid-invocation leaves trained cells without scores, which
``snapshot.py`` cannot keep. Trained one cell per invocation, each cell is scored as soon as it
has trained (and the invocation's start, about 15 s, is small against a cell's 7 minutes):

    for cell in $(.venv/bin/python docs/study/2026-12-06-evidence/next_cells.py ohem focal); do
      bash docs/study/2026-12-06-evidence/run_tier.sh --nodes "$cell.train,$cell.evaluate"
    done

The cells to train are ``restore.py``'s: those without scores and, on a machine where committed
cells were restored, the parents they start from (a restored cell has no checkpoint) and any
restored cell that started from a cell trained again. Where this machine trained every cell,
that is the cells without scores. A cell trained but not scored is listed too:
``--only-missing-outputs`` then skips its training.
``--trained`` lists only those (trained, not scored), of every run: what a stopped invocation
left to score.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("restore", HERE / "restore.py")
restore = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(restore)


def to_train(data_root: Path, study, runs: list[str]) -> list[str]:
    """The names of the cells of ``runs`` still to train in ``data_root``, in grid order."""
    training = restore.cells_to_train(data_root, list(restore.cells(study)))
    return [cell.name for cell in training if cell.run in runs]


def trained_unscored(data_root: Path, study) -> list[str]:
    """The names of the cells with a checkpoint and no scores in ``data_root``, in grid order."""
    return [
        cell.name
        for cell in restore.cells(study)
        if restore.has_checkpoint(data_root, cell) and not restore.has_scores(data_root, cell)
    ]


def main(runs: list[str], data_root: Path = restore.DATA_ROOT, study=None) -> int:
    study = study or restore.evidence_study()
    if runs == ["--trained"]:
        print("\n".join(trained_unscored(data_root, study)))
        return 0
    unknown = [run for run in runs if run not in {cell.run for cell in restore.cells(study)}]
    if unknown:
        print(f"not a run of the evidence study: {', '.join(unknown)}", file=sys.stderr)
        return 2
    for name in to_train(data_root, study, runs):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
