"""Continue the evidence study on a new machine from the finished cells committed in ``cells/``
(``snapshot.py``), training only what is missing.

1. Copies each committed cell's ``scores.csv`` and ``history.csv`` into the data root as a
   version of its dataset (the run id of its scored checkpoint), unless the data root already
   holds scores of that cell (a cell this machine trained is kept) or an earlier run set the
   cell aside to train again (3).
2. Works out the cells still to train: those without scores, then, until nothing changes, the
   parent of any of them whose checkpoint is not on this machine (a restored cell has none, and a
   stage's node reads its parent's checkpoint) and any restored cell that started from a cell
   trained again (its lineage would no longer match, and the summary would refuse it).
3. Sets aside (below ``restored_set_aside/`` in the data root) the scores and history of every
   restored cell it has to train again, so that Kedro scores it again: with
   ``--only-missing-outputs`` a cell's scoring node runs only where its scores are missing, and
   scores kept from the lost machine would name a checkpoint that no longer exists, which the
   summary refuses in the cells started from the new one. Set aside, the cell also stays to
   train for a later run of this script on this machine.
4. Copies the committed invocation log into the data root if it has none, so the log (and
   ``collect.py``'s ``invocations.csv``) stays whole across machines.
5. Writes ``restore_nodes.txt`` in the data root: the fold splits, each of those cells' ``train``
   and ``evaluate`` nodes in grid order, the convergence check and the summary, comma-separated
   for ``kedro run --nodes``:

    .venv/bin/python docs/study/2026-12-06-evidence/restore.py [DATA_ROOT]
    bash docs/study/2026-12-06-evidence/run_tier.sh --nodes "$(cat data/evidence/restore_nodes.txt)"

Run it after ``kedro run --env evidence --pipelines ingestion,preprocessing,split``; again after
an interruption (it counts what the machine has trained since). After a restore, continue only
this way: a ``--tags`` run would train the restored cells again, their checkpoints being absent.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd

from efm_seg.framework.config_loader import ProjectConfigLoader
from efm_seg.parameters import StudyParams
from efm_seg.study.grid import Cell, cells

HERE = Path(__file__).resolve().parent
DATA_ROOT = HERE.parents[2] / "data" / "evidence"
CONF = HERE.parents[2] / "conf"
FILES = ("scores.csv", "history.csv")
NODES = "restore_nodes.txt"
SET_ASIDE = "restored_set_aside"
LOG = "study_invocations.log"


def folder(cell: Cell) -> Path:
    """Where the catalog keeps a cell's datasets, below ``06_models/study`` or
    ``07_model_output/study``."""
    return Path(cell.arch, cell.fold, f"seed{cell.seed}", cell.run, cell.stage)


def versions(dataset: Path) -> list[Path]:
    """The saved versions of a versioned dataset, oldest first."""
    return sorted(v / dataset.name for v in dataset.glob("*") if (v / dataset.name).is_file())


def has_scores(data_root: Path, cell: Cell) -> bool:
    return bool(versions(data_root / "07_model_output/study" / folder(cell) / "scores.csv"))


def has_checkpoint(data_root: Path, cell: Cell) -> bool:
    return bool(versions(data_root / "06_models/study" / folder(cell) / "best_checkpoint.pt"))


def started_from_parent(data_root: Path, cell: Cell) -> bool:
    """Whether the cell's scored checkpoint started from its parent's (``init_stage`` set)."""
    saved = versions(data_root / "07_model_output/study" / folder(cell) / "scores.csv")
    stage = pd.read_csv(saved[-1], keep_default_na=False)["init_stage"].astype(str)
    return bool(stage.str.len().gt(0).any())


def restore(source: Path, data_root: Path, grid: list[Cell]) -> list[Cell]:
    """Copy the committed cells of ``grid`` that the data root has no scores of; the restored."""
    restored = []
    for cell in grid:
        kept = source / folder(cell)
        if not all((kept / name).is_file() for name in FILES) or has_scores(data_root, cell):
            continue
        if (data_root / SET_ASIDE / folder(cell)).exists():
            continue  # restored before and set aside to train again: not wanted back
        version = str(pd.read_csv(kept / "scores.csv")["checkpoint_run"].iloc[0])
        for name in FILES:
            target = data_root / "07_model_output/study" / folder(cell) / name / version / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept / name, target)
        restored.append(cell)
    return restored


def cells_to_train(data_root: Path, grid: list[Cell]) -> list[Cell]:
    """The cells a run must train so that the grid is complete (see the module's docstring)."""
    wanted = {cell for cell in grid if not has_scores(data_root, cell)}
    changed = True
    while changed:
        changed = False
        for cell in grid:
            parent = cell.parent
            if cell in wanted and parent is not None and parent not in wanted:
                if not has_checkpoint(data_root, parent):
                    wanted.add(parent)
                    changed = True
            elif cell not in wanted and parent in wanted and started_from_parent(data_root, cell):
                wanted.add(cell)
                changed = True
    return [cell for cell in grid if cell in wanted]


def set_aside(data_root: Path, training: list[Cell]) -> list[Cell]:
    """Move the scores and history of the cells of ``training`` that have scores and no
    checkpoint (restored ones) below ``restored_set_aside/``; the cells moved."""
    moved = []
    for cell in training:
        if not has_scores(data_root, cell) or has_checkpoint(data_root, cell):
            continue
        for name in FILES:
            dataset = data_root / "07_model_output/study" / folder(cell) / name
            if dataset.is_dir():
                target = data_root / SET_ASIDE / folder(cell) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(target, ignore_errors=True)  # set aside by an earlier run
                shutil.move(dataset, target)
        moved.append(cell)
    return moved


def node_names(study: StudyParams, training: list[Cell]) -> list[str]:
    """The nodes that train and score ``training``, with the fold splits before and the
    convergence check and the summary after."""
    return [
        *(f"study.folds.split_{fold}" for fold in study.folds),
        *(f"{cell.name}.{node}" for cell in training for node in ("train", "evaluate")),
        "study.check_convergence",
        "study.summarize",
    ]


def evidence_study(conf: Path = CONF) -> StudyParams:
    loader = ProjectConfigLoader(conf_source=str(conf), base_env="base", env="evidence")
    return StudyParams.model_validate(loader["parameters"]["study"])


def main(data_root: Path, study: StudyParams | None = None, source: Path = HERE / "cells") -> int:
    study = study or evidence_study()
    grid = list(cells(study))
    restored = restore(source, data_root, grid)
    if (source / LOG).is_file() and not (data_root / LOG).exists():
        shutil.copyfile(source / LOG, data_root / LOG)
    training = cells_to_train(data_root, grid)
    moved = set_aside(data_root, training)
    (data_root / NODES).write_text(",".join(node_names(study, training)) + "\n")
    print(
        f"restored {len(restored)} cells; {len(training)} of {len(grid)} to train, "
        f"{len(moved)} of them restored ones set aside (nodes in {data_root / NODES})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA_ROOT))
