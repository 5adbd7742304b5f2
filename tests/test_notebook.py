"""The shipped notebook (notebooks/efm_maps.ipynb) runs headless on a real run's outputs.

It is executed with nbclient, in a kernel of this interpreter, against the project of the
``demo_run`` fixture: every cell must run, the figure cells must draw, and the values it reports
must be the catalog's. A renamed catalog entry, a changed checkpoint or snapshot layout, or a
moved ``efm_seg`` function therefore fails here, not in a user's Jupyter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from nbclient import NotebookClient

from tests.conftest import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "notebooks" / "efm_maps.ipynb"
KERNEL = "efm-seg-test"
FIGURE_CELLS = ("curves", "snapshots", "efm-maps")
"""Tags of the cells that must each show a figure."""


def tagged(notebook, tag: str):
    cells = [c for c in notebook.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"the notebook should have one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def stdout_of(cell) -> str:
    return "".join(
        o["text"] for o in cell.outputs if o.output_type == "stream" and o.name == "stdout"
    )


def test_notebook_is_stored_clean():
    """No outputs or execution counts in the repository: diffs stay readable, no stale figures."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code
    assert all(not c.outputs and c.execution_count is None for c in code)
    for tag in ("session", "load", "checkpoint", "summary", *FIGURE_CELLS):
        tagged(notebook, tag)


@pytest.fixture
def kernel_of_this_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec running ``sys.executable`` (this venv), found first on the Jupyter path;
    IPython's and Jupyter's own files go to ``tmp_path``, not the user's home."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "efm-seg test",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    # Figures as PNG outputs whatever backend the calling shell asks for (e.g. MPLBACKEND=Agg).
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return KERNEL


@pytest.mark.slow
def test_efm_notebook_runs_on_the_latest_run(
    demo_run, kernel_of_this_interpreter, tmp_path, monkeypatch
):
    # The kernel inherits these: the project and environment the notebook reads.
    monkeypatch.setenv("EFM_SEG_PROJECT", str(demo_run))
    monkeypatch.setenv("KEDRO_ENV", "local")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    workdir = tmp_path / "cwd"  # the kernel's working directory: nothing lands in the repo
    workdir.mkdir()
    NotebookClient(
        notebook,
        kernel_name=kernel_of_this_interpreter,
        timeout=240,
        startup_timeout=120,
        resources={"metadata": {"path": str(workdir)}},
    ).execute()  # raises CellExecutionError, with the cell and its traceback, on any error

    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    for tag in FIGURE_CELLS:
        images = [o for o in tagged(notebook, tag).outputs if "image/png" in o.get("data", {})]
        assert images, f"the {tag!r} cell drew no figure"

    # The values the notebook reports are the latest run's, read here through the catalog.
    line = next(
        line
        for line in stdout_of(tagged(notebook, "summary")).splitlines()
        if line.startswith("SUMMARY ")
    )
    summary = json.loads(line.removeprefix("SUMMARY "))
    bootstrap_project(demo_run)
    with KedroSession.create(project_path=demo_run, env="local") as session:
        catalog = session.load_context().catalog
        checkpoint = catalog.load("efm.best_checkpoint")
        snapshots = catalog.load("efm.efm_snapshots")
        split = catalog.load("split")
        histories = {s: len(catalog.load(f"{s}.history")) for s in ("baseline", "efm", "finetune")}
    assert summary["env"] == "local"
    assert summary["best_epoch"] == checkpoint["epoch"]
    assert summary["val_iou"] == pytest.approx(checkpoint["metrics"]["val_iou"], abs=1e-6)
    assert summary["run_id"] == checkpoint["lineage"]["run_id"]
    assert summary["snapshot_epochs"] == [int(e) for e in snapshots["epochs"]]
    assert summary["snapshot_epochs"], "the demo run stores EFM snapshots: the figure shows them"
    assert summary["history_epochs"] == histories
    test_ids = sorted(split.loc[split["split"] == "test", "sample_id"])[:3]
    assert summary["test_ids"] == test_ids and test_ids
    assert f"val_iou {checkpoint['metrics']['val_iou']:.6f}" in stdout_of(
        tagged(notebook, "checkpoint")
    )


def test_kedro_ipython_starts_the_projects_python_without_activation(kedro_project, tmp_path):
    """`.venv/bin/kedro ipython` with no environment activated (nothing of .venv on the PATH):
    efm_seg.cli's command starts IPython in kedro's own Python, with the project loaded."""
    import subprocess

    script = tmp_path / "probe.py"
    script.write_text(
        "import sys\n"
        "print('PYTHON', sys.executable)\n"
        "print('CATALOG', 'manifest' in catalog.keys(), type(session).__name__)\n"
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kedro"), "ipython", str(script)],
        cwd=kedro_project,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DO_NOT_TRACK": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"PYTHON {sys.executable}" in result.stdout
    assert "CATALOG True KedroSession" in result.stdout
