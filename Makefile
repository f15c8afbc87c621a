# Two commands do all the set-up on a fresh machine (see README):
#   make run    install, train a translator on the bundled corpus, translate a few sentences
#   make test   install with the test extras, run the default (fast) test suite and build the docs strictly
#   make docs   build the documentation site into site/ (offline, strict); make docs-serve serves it
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned: 2.13.0 is a local CPU build here; an unpinned torch pulls a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: setup setup-test setup-docs run test test-slow demo browser docs docs-serve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# `make run` installs what running needs; `make test` adds the test extras (pytest, transformers, ...).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev,test]"
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[docs]"
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

demo: setup
	$(BIN)/aiayn demo

# The main job: train an English->Spanish translator on the bundled KJV / Reina-Valera corpus (it ends by
# printing test BLEU on the Gospel of John; durations in docs/results.md), then translate with it.
# A finished run is reused; `rm -r runs/kjv-en-es` to train again, or `aiayn train --resume` to continue.
RUN_DIR := runs/kjv-en-es
run: setup
	test -f $(RUN_DIR)/model/model.safetensors || OMP_WAIT_POLICY=PASSIVE $(BIN)/aiayn train --out $(RUN_DIR)
	$(BIN)/aiayn translate $(RUN_DIR)/model "In the beginning God created the heaven and the earth." \
		"The Lord is my shepherd; I shall not want." "And God said, Let there be light: and there was light."

# tests/test_viz_browser.py drives Debian's chromium through playwright (never `playwright install`: it
# downloads browsers). Installing it needs root; without a browser that one test is skipped and says so.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || \
	  echo "chromium not installed (needs root: apt-get install -y chromium); the browser test will be skipped"

# The site (mkdocs.yml): guide, the walk-through whose examples run while it builds (a toy translator trained
# once and cached in .cache/docs/), API reference, benchmarks, results. Strict: a broken link, a missing code
# include or a failing example fails the build. Nothing is fetched from the network.
setup-docs: $(VENV)/.installed-docs

docs: setup-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

docs-serve: setup-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve --strict

# the docs are built first, so tests/test_docs_browser.py opens the site just built
test: setup-test browser docs
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q

test-slow: setup-test
	$(BIN)/python -m pytest -q -m slow
