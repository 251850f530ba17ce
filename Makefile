# The README's commands. `make repro` and `make test` each set everything up first (scripts/setup.sh).
PROFILE ?= default
JOBS ?= 2
VENV ?= .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl
export PYTHONHASHSEED := 0

.PHONY: setup repro test lab clean-reports

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh

## Reproduce the study with DVC: make repro [PROFILE=smoke|default|paper] [JOBS=2: stages at once]
repro: setup
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/vlm4vla repro --profile $(PROFILE) --jobs $(JOBS)

## Run the test suite (what CI runs)
test: setup
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/pytest -q

## Open JupyterLab on the notebooks with the project's kernel (jupytext opens the .py notebooks)
lab: setup
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/jupyter lab --notebook-dir=notebooks
