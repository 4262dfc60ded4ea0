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

.PHONY: demo test install clean chromium

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" >/dev/null 2>&1 || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,cpu]"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/solforge evolve $(DEMO_PROBLEM) --max-candidates $(DEMO_CANDIDATES)

test: $(BIN)/.installed chromium
	$(BIN)/python -m pytest -q

# The report's browser test drives Debian's chromium: installed here where apt-get can (as
# root), never failing the build where it cannot; the test then skips and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
		echo "chromium is not installed and could not be: the report's browser test will skip"

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
