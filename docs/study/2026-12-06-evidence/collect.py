"""Collect the evidence study's results into this folder for the write-up.

Copies the latest version of each of the study's reports (``08_reporting/study``) here, and
writes two tables the reports do not hold:

- ``cells.csv``: per cell, the epochs it trained, their training seconds, how many invocations
  it trained in, and the processor(s) it trained on: each epoch's ``hardware``, or, for epochs
  trained before histories recorded it, the machine the invocation log names for the
  invocation that trained them (a seeded cell differs in its last digits on another processor);
- ``invocations.csv``: every invocation in ``study_invocations.log``: start, end, wall time,
  machine, how it ended (``no end logged`` when it was killed with its session, or still runs),
  and its arguments.

    .venv/bin/python docs/study/2026-12-06-evidence/collect.py [DATA_ROOT] [DEST]
"""

from __future__ import annotations

import re
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
DATA_ROOT = HERE.parents[2] / "data" / "evidence"
REPORTS = (
    "per_seed.csv", "summary.csv", "paired.csv", "per_fold.csv", "convergence.csv",
    "convergence.png", "tables.md", "ablation.png",
)  # fmt: skip
CELL = ["arch", "fold", "seed", "run", "stage"]

START = re.compile(r"^(\S+Z) start(?: on (.+?) \((\d+) CPUs\))?:? ?(.*)$")
END = re.compile(r"^(\S+Z) end (?:rc=(\d+)|\(stopped by (\w+)\)) wall_s=(\d+)")
# The first invocation's machine was added to the log by hand, below its start.
MACHINE_NOTE = re.compile(r"^\(the invocation above ran on (.+?), (\d+) CPUs\)")


def latest(path: Path) -> Path | None:
    """The newest version of a versioned dataset (a folder of timestamped versions, each
    holding a file of the dataset's name), the file itself when not versioned, else None."""
    if path.is_file():
        return path
    versions = sorted(v / path.name for v in path.glob("*") if (v / path.name).is_file())
    return versions[-1] if versions else None


def parse_time(text: str) -> datetime:
    """A log time (``2026-12-07T02:13:11Z``) or a run id (``2026-12-07T02.13.14.376Z``)."""
    for layout in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H.%M.%S.%fZ"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"not a log time or run id: {text!r}")


def invocations(log: Path) -> pd.DataFrame:
    """Every invocation the log records, in order."""
    rows: list[dict] = []
    for line in log.read_text().splitlines() if log.is_file() else []:
        if started := START.match(line):
            time, machine, cpus, arguments = started.groups()
            rows.append(
                {"start": time, "end": "", "wall_s": None, "machine": machine or "",
                 "cpus": int(cpus) if cpus else None, "ended": "no end logged",
                 "arguments": arguments}
            )  # fmt: skip
        elif (ended := END.match(line)) and rows:
            time, rc, signal, wall = ended.groups()
            rows[-1].update(end=time, wall_s=int(wall))
            rows[-1]["ended"] = f"rc={rc}" if rc is not None else f"stopped by {signal}"
        elif (noted := MACHINE_NOTE.match(line)) and rows and not rows[-1]["machine"]:
            rows[-1].update(machine=noted.group(1), cpus=int(noted.group(2)))
    columns = ["start", "end", "wall_s", "machine", "cpus", "ended", "arguments"]
    return pd.DataFrame(rows, columns=columns).astype({"wall_s": "Int64", "cpus": "Int64"})


def machine_of(run_id: str, runs: pd.DataFrame) -> str:
    """The machine of the last invocation started before ``run_id`` (a Kedro run's id is the
    time it started, within seconds of its invocation)."""
    started = runs[[parse_time(s) <= parse_time(run_id) for s in runs["start"]]]
    return started["machine"].iloc[-1] if len(started) and started["machine"].iloc[-1] else ""


def cells(study_output: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per trained cell: epochs, training seconds, invocations, processors."""
    rows = []
    for folder in sorted(study_output.glob("*/*/*/*/*/history.csv")):
        history = pd.read_csv(latest(folder))
        recorded = history["hardware"] if "hardware" in history else pd.Series(index=history.index)
        processors = [
            hardware if isinstance(hardware, str) and hardware
            else machine_of(run_id, runs) or "not recorded"
            for hardware, run_id in zip(recorded, history["run_id"], strict=True)
        ]  # fmt: skip
        arch, fold, seed, run, stage = folder.parent.relative_to(study_output).parts
        rows.append(
            {"arch": arch, "fold": fold, "seed": int(seed.removeprefix("seed")), "run": run,
             "stage": stage, "epochs": len(history),
             "train_s": round(float(history["seconds"].sum()), 1),
             "invocations": history["run_id"].nunique(),
             "processors": "; ".join(dict.fromkeys(processors))}
        )  # fmt: skip
    columns = [*CELL, "epochs", "train_s", "invocations", "processors"]
    return pd.DataFrame(rows, columns=columns).sort_values(CELL, kind="stable")


def main(data_root: Path, dest: Path) -> int:
    reports = data_root / "08_reporting" / "study"
    copied = []
    for name in REPORTS:
        if (source := latest(reports / name)) is not None:
            shutil.copyfile(source, dest / name)
            copied.append(name)
    runs = invocations(data_root / "study_invocations.log")
    runs.to_csv(dest / "invocations.csv", index=False)
    table = cells(data_root / "07_model_output" / "study", runs)
    table.to_csv(dest / "cells.csv", index=False)
    print(f"copied {len(copied)} of {len(REPORTS)} reports: {', '.join(copied) or 'none'}")
    print(
        f"{len(table)} cells trained, {table['train_s'].sum() / 3600:.1f} h of training; "
        f"{len(runs)} invocations, {runs['wall_s'].sum() / 3600:.1f} h of wall time logged"
    )
    for processors, count in table["processors"].value_counts().items():
        print(f"  {count} cells on {processors}")
    return 0


if __name__ == "__main__":
    arguments = [Path(a) for a in sys.argv[1:3]]
    sys.exit(main(*arguments, *[DATA_ROOT, HERE][len(arguments) :]))
