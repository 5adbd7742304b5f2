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

.PHONY: venv demo test lint format viz clean-data

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "efm-seg needs Python 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/kedro run

test: venv lint
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: venv
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

viz: venv
	$(BIN)/kedro viz run

clean-data:  ## remove every run output under data/ (every environment's)
	git clean -fdXq data/
