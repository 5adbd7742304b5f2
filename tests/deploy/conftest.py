"""The deployment environment (scripts/deploy-env.sh): the project's wheel and conf tarball,
installed with apache-airflow in .venv-deploy, as on an Airflow worker."""

from __future__ import annotations

import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, write_tiny_local

DEPLOY_VENV = PROJECT_ROOT / ".venv-deploy"
DIST = PROJECT_ROOT / "dist"


@dataclass(frozen=True)
class DeployEnv:
    bin: Path
    wheel: Path
    conf_tarball: Path

    def run(self, command: list[str], cwd: Path, timeout: float, **env: str):
        """``command`` (its first word a program of the environment) in ``cwd``, with nothing of
        the development environment: no source tree on the path, telemetry off."""
        environment = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "DO_NOT_TRACK": "1",
            "KEDRO_DISABLE_TELEMETRY": "true",
            **env,
        }
        return subprocess.run(
            [str(self.bin / command[0]), *command[1:]],
            cwd=cwd,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="session")
def deploy_env() -> DeployEnv:
    """.venv-deploy with the wheel of the current source installed.

    Skipped when it was never built (pytest run alone); ``make test`` builds it first and sets
    EFM_SEG_REQUIRE_DEPLOY_ENV, so that in CI a missing or stale environment fails instead.
    """
    wheels = sorted(DIST.glob("efm_seg-*.whl"))
    tarball = DIST / "conf-efm_seg.tar.gz"
    if not (DEPLOY_VENV / "bin" / "airflow").is_file() or not wheels or not tarball.is_file():
        reason = f"{DEPLOY_VENV.name} or dist/ is missing: run `make deploy-env`"
        if os.environ.get("EFM_SEG_REQUIRE_DEPLOY_ENV"):
            pytest.fail(reason)
        pytest.skip(reason)
    installed = next((DEPLOY_VENV / "lib").glob("python3.*/site-packages/efm_seg"))
    stale = [
        str(source.relative_to(PROJECT_ROOT))
        for source in (PROJECT_ROOT / "src/efm_seg").rglob("*.py")
        if not (installed / source.relative_to(PROJECT_ROOT / "src/efm_seg")).is_file()
        or (installed / source.relative_to(PROJECT_ROOT / "src/efm_seg")).read_bytes()
        != source.read_bytes()
    ]
    assert not stale, f"{DEPLOY_VENV.name} holds older code ({stale[:3]}): run `make deploy-env`"
    return DeployEnv(bin=DEPLOY_VENV / "bin", wheel=wheels[-1], conf_tarball=tarball)


def unpacked_conf(deploy_env: DeployEnv, project: Path) -> Path:
    """The conf tarball unpacked in ``project`` (as on a worker), with the tiny test run's
    ``conf/local``; the folder ``project/conf``."""
    project.mkdir(parents=True, exist_ok=True)
    with tarfile.open(deploy_env.conf_tarball) as archive:
        archive.extractall(project, filter="data")
    write_tiny_local(project / "conf")
    return project / "conf"
