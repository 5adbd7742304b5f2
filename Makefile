# Two commands do all set-up on a fresh clone (both create .venv/ first if needed):
#   make demo   - the whole default `kedro run` on the embedded synthetic data, offline
#   make test   - lint and the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# No telemetry, no prompt, no outbound call.
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := true

.PHONY: venv demo test test-tools deploy-env airflow-dag lint format viz viz-site clean-data

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "efm-seg needs Python 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/kedro run

# The deployment tests (tests/deploy) must run here: a missing deploy environment fails them.
test: venv lint test-tools deploy-env
	EFM_SEG_REQUIRE_DEPLOY_ENV=1 $(BIN)/python -m pytest

test-tools:  ## system tools the tests need: Debian's chromium + chromedriver (tests/viz)
	bash scripts/install-test-tools.sh

lint: venv
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/lint-imports --no-logo  ## the layers of docs/architecture.md ([tool.importlinter])

format: venv
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

viz: venv
	$(BIN)/kedro viz run

# The static kedro-viz site, in its own folder: `kedro viz build` would write to build/,
# where setuptools (`kedro package`) keeps its intermediate files.
VIZ_SITE ?= viz-site
viz-site: venv
	$(BIN)/python scripts/build_viz_site.py $(VIZ_SITE)

# The wheel and conf tarball (dist/) installed with Airflow in .venv-deploy, as on a worker:
# rebuilt when the code, the configuration or the pins change (scripts/deploy-env.sh).
DEPLOY_STAMP := .venv-deploy/.installed
deploy-env: $(DEPLOY_STAMP)

$(DEPLOY_STAMP): $(STAMP) pyproject.toml scripts/deploy-env.sh deploy/airflow/constraints.txt \
		$(shell git ls-files src conf 2>/dev/null)
	bash scripts/deploy-env.sh
	touch $@

# The shipped Airflow DAG: one task per pipeline (namespace). Run again after changing the
# pipelines, conf/base/airflow.yml or the template; a test fails while it is out of date.
airflow-dag: venv
	$(BIN)/kedro airflow create --group-by namespace --jinja-file deploy/airflow/dag_template.j2 --target-dir deploy/airflow/dags

clean-data:  ## remove every run output under data/ (every environment's)
	git clean -fdXq data/
