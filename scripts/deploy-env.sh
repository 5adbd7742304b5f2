#!/usr/bin/env bash
# The deployment environment, as an Airflow worker has it, for the packaging and Airflow tests
# (tests/deploy) and for trying a deployment by hand:
#   1. `kedro package` builds the wheel and the conf tarball into dist/;
#   2. .venv-deploy gets apache-airflow and that wheel with its `mlflow` extra (tracking; no source
#      tree, no dev tools), pinned by deploy/airflow/constraints.txt.
# Usage: bash scripts/deploy-env.sh   (make deploy-env runs it when the project changed)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv-deploy
AIRFLOW_VERSION=3.3.2
export DO_NOT_TRACK=1 KEDRO_DISABLE_TELEMETRY=true

rm -rf dist
.venv/bin/kedro package
wheel=$(ls dist/efm_seg-*.whl)

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -c deploy/airflow/constraints.txt \
    "apache-airflow==$AIRFLOW_VERSION" "$wheel[mlflow]"
# The same version number with changed code: replace the package itself.
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheel"
"$VENV/bin/python" -m pip check
echo "deploy environment ready: $VENV (apache-airflow $AIRFLOW_VERSION, $(basename "$wheel"))"
