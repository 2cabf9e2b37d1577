# Two commands: `make demo` and `make test`. Each sets up .venv from scratch when needed; a re-run with nothing
# changed skips the install (the stamp file is newer than pyproject.toml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# On the project's CPU machines this pin takes the local CPU build; elsewhere pip's normal (CUDA) build.
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/vlpref demo --out runs/demo

# The viewer's browser tests drive Debian's chromium (Playwright comes with the dev extras); installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } || \
		  sudo apt-get install -y -q chromium >/dev/null 2>&1 || echo "could not install chromium: the browser tests will fail"; }

test: setup browser
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) runs
