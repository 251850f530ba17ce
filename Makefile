# The README's commands. `make repro` and `make test` each set everything up first (scripts/setup.sh).
PROFILE ?= default
JOBS ?= 2
VENV ?= .venv
LIBERO_VENV ?= .venv-libero
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl
export PYTHONHASHSEED := 0

.PHONY: setup repro test lab clean-reports

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh

# LIBERO (Benchmark 2) lives in its own environment (robosuite/mujoco pins clash with Meta-World's);
# every profile but smoke records LIBERO demonstrations, so `make repro` creates it first.
$(LIBERO_VENV)/.installed: constraints-libero.txt scripts/setup.sh
	VENV=$(VENV) LIBERO=1 LIBERO_VENV=$(LIBERO_VENV) bash scripts/setup.sh

## Reproduce the study with DVC: make repro [PROFILE=smoke|default|paper] [JOBS=2: stages at once]
repro: setup $(if $(filter smoke,$(PROFILE)),,$(LIBERO_VENV)/.installed)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/vlm4vla repro --profile $(PROFILE) --jobs $(JOBS)

## Run the test suite (what CI runs); LIBERO's environment too, so Benchmark 2's known answers are tested
test: setup $(LIBERO_VENV)/.installed
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/pytest -q

## Open JupyterLab on the notebooks with the project's kernel (jupytext opens the .py notebooks)
lab: setup
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/jupyter lab --notebook-dir=notebooks
