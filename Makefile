# Two commands do all the set-up on a fresh machine (see README):
#   make run    install, train a translator on the bundled corpus, translate a few sentences
#   make test   install with the test extras, run the default (fast) test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned: 2.13.0 is a local CPU build here; an unpinned torch pulls a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: setup run test test-slow demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/aiayn demo

run: setup
	$(BIN)/aiayn demo

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow
