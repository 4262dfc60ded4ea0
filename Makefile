# Quick start: `make demo` runs the main job on the default problem; `make test` runs the tests.
# Both create .venv and install solforge into it first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch to install when the machine's python has none. This project's CPU machines
# hold the CPU build of torch 2.13.0 on disk; elsewhere, e.g. `make TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
# Where the machine's python already has torch (a GPU image), the venv reuses it.
VENV_FLAGS := $(shell $(PYTHON) -c "import torch" >/dev/null 2>&1 && echo --system-site-packages)
DEMO_PROBLEM ?= rmsnorm_h4096
DEMO_CANDIDATES ?= 20

.PHONY: demo test install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" >/dev/null 2>&1 || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,cpu]"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/solforge evolve $(DEMO_PROBLEM) --max-candidates $(DEMO_CANDIDATES)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
