# The two commands the README shows after `git clone`: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Strangler needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py cdc/_speedups.c
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml setup.py cdc/_speedups.c
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

# the walkthrough's step 7 runs lint-imports (a dev extra): demo installs the dev extras
demo: $(VENV)/.installed-dev
	$(BIN)/strangler walkthrough --auto

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	-$(BIN)/python -m devstack.apt  # Debian packages some tests need; those tests say so if missing
	$(BIN)/pytest
