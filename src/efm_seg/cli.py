"""Project commands: Kedro lists these before its own, so a command here replaces Kedro's."""

from __future__ import annotations

import os
import sys

import click
from kedro.framework.cli.project import run
from kedro.framework.cli.utils import call

# `efm-seg` / `python -m efm_seg` (the packaged project) run `run` from this module once it
# exists (kedro.framework.cli.utils.find_run_command): Kedro's own, unchanged.
__all__ = ["cli", "ipython", "run"]


@click.group(name="efm_seg")
def cli() -> None:
    """efm-seg's own commands."""


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--env", "-e", type=str, default=None, help="Kedro configuration environment.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ipython(env: str | None, args: tuple[str, ...]) -> None:
    """Open IPython with the project loaded (catalog, context, pipelines, session).

    Kedro's own command starts whatever ``ipython`` is first on the PATH: without the virtual
    environment activated, another Python's, which cannot import the project. This one starts
    IPython in the Python that runs ``kedro`` (``.venv/bin/kedro ipython`` works unactivated).
    """
    if env:
        os.environ["KEDRO_ENV"] = env
    call([sys.executable, "-m", "IPython", "--ext", "kedro.ipython", *args])
