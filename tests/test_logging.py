"""What a user sees: real ``kedro`` commands in an 80-column terminal log one plain line per
record (conf/logging.yml) and no warnings about Kedro's or OmegaConf's internals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, make_project

# conf/logging.yml's format: "<date> <time> <LEVEL> <logger>: <message>", all on one line.
RECORD = re.compile(
    r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S"
)
WARNINGS = ("register_new_resolver", "dataset names contain '.'")


def kedro(project: Path, *args: str) -> tuple[str, str]:
    """The (stdout, stderr) of ``kedro ARGS`` in ``project``, as from a terminal 80 columns
    wide."""
    env = {
        k: v for k, v in os.environ.items() if k not in {"KEDRO_LOGGING_CONFIG", "PYTHONWARNINGS"}
    }
    env |= {"COLUMNS": "80", "LINES": "24", "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"kedro {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout, done.stderr


@pytest.fixture(scope="module")
def commands(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """``kedro registry list`` (imports every pipeline) and ``kedro run --pipelines ingestion``
    in one throw-away project."""
    project = make_project(tmp_path_factory.mktemp("logging"))
    return {
        "registry": kedro(project, "registry", "list"),
        "run": kedro(project, "run", "--pipelines", "ingestion"),
    }


@pytest.mark.parametrize("command", ["registry", "run"])
def test_no_warning_about_kedro_or_omegaconf_internals(commands, command):
    output = "".join(commands[command])
    for text in WARNINGS:
        assert text not in output, output


@pytest.mark.parametrize("command", ["registry", "run"])
def test_each_record_is_one_plain_line(commands, command):
    lines = commands[command][1].splitlines()
    assert lines, "no log records"
    for line in lines:
        # Not wrapped into columns (a continuation starts without a timestamp), not padded to
        # the terminal's width, no rich boxes or level colours.
        assert RECORD.match(line), f"not one record per line: {line!r}\n" + "\n".join(lines)
        assert line == line.rstrip() and "\x1b[" not in line, repr(line)


def test_long_messages_stay_whole_on_their_line(commands):
    lines = commands["run"][1].splitlines()
    # Longer than 80 columns: a wrapping handler would cut each over several lines.
    manifest = [line for line in lines if "efm_seg.pipelines.ingestion.nodes: Manifest:" in line]
    assert len(manifest) == 1 and re.search(r" ignore [\d.]+%$", manifest[0]), lines
    node = [line for line in lines if "kedro.pipeline.node: Running node:" in line]
    assert len(node) == 1 and node[0].endswith("-> [manifest]"), lines
    end = [line for line in lines if "sequential_runner: Pipeline execution completed" in line]
    assert len(end) == 1 and end[0].endswith(" sec."), lines


def test_stdout_keeps_only_the_command_output(commands):
    listed = yaml.safe_load(commands["registry"][0])
    assert "ingestion" in listed and "__default__" in listed
    assert commands["run"][0] == ""


def test_project_and_kedro_at_info_everything_else_at_warning():
    config = yaml.safe_load((PROJECT_ROOT / "conf/logging.yml").read_text())
    assert config["loggers"]["efm_seg"]["level"] == "INFO"
    assert config["loggers"]["kedro"]["level"] == "INFO"
    assert config["root"]["level"] == "WARNING"
