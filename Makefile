# Every target sets itself up: a virtual environment in .venv, (re)installed when pyproject.toml
# changes. On a machine without an NVIDIA GPU, torch is the small CPU build (2.13.0); with one, the
# newest torch in the project's range. The sweep and the benchmark need the project alone; the tests
# also the dev and models extras (pytest, hypothesis, notebooks, transformers for the cross-check).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEV    := $(VENV)/.installed-dev-stamp
TORCH  ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.4,<2.15' || echo 'torch==2.13.0')
OUT    ?= reports/latest

.PHONY: test parity sweep-pytest bench notebook clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e .
	@touch $(STAMP)

$(DEV): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,models]'
	@touch $(DEV)

test: $(DEV)
	$(BIN)/python -m pytest -n auto

parity: $(STAMP)
	$(BIN)/parity sweep --grid default --device auto --out $(OUT)

# The parallel sweep: one pytest case per grid case over all cores (or one worker per GPU).
sweep-pytest: $(DEV)
	PARITY_GRID=$${PARITY_GRID:-default} $(BIN)/python -m pytest -n auto tests/sweep

bench: $(STAMP)
	$(BIN)/parity bench

notebook: $(DEV)
	@$(BIN)/python -c 'import jupyterlab' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[dev,notebook]'
	$(BIN)/python -m jupyter lab --notebook-dir=notebooks

clean-venv:
	rm -rf $(VENV)
