# Two commands on a fresh machine (see README.md):
#   make demo   install into .venv, then run the whole benchmark workflow on the embedded
#               synthetic cohorts (config/config.yaml): snakemake --cores all, then
#               snakemake --report results/report.html
#   make test   install into .venv (with the test extras), then run the test suite
#   make test-fast   the unit tests that are not marked slow (under a minute): while coding
#
# torch is installed first and on its own, so that nothing pulls a multi-GB CUDA build
# on a CPU machine. GPU users override TORCH, e.g.
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
CONSTRAINTS := workflow/envs/constraints.txt
# the one pin of torch is in $(CONSTRAINTS)
TORCH ?= $(shell grep -m1 '^torch==' $(CONSTRAINTS))
PIP := $(VENV)/bin/python -m pip

.PHONY: demo test test-fast install clean-venv

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[test,contour]'
	touch $@

install: $(VENV)/.installed

# the workflow's jobs run the venv's `calf`: its bin folder goes first on PATH
demo: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/snakemake --cores all $(SNAKEMAKE_ARGS)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/snakemake --report results/report.html $(SNAKEMAKE_ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest tests/unit -m "unit and not slow"

clean-venv:
	rm -rf $(VENV)
