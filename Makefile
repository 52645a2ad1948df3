# The two commands of the README:
#   make run    installs what is missing into .venv, then runs the workflow on config/config.yaml
#   make test   installs what is missing (Python tools, and SLURM + Chromium when root), then runs
#               the linters, the formatter checks, `snakemake --lint` and the whole test suite
#   make chemprop  chemprop 2.3.1, the benchmark peer, into its own .venv-chemprop (BENCHMARKS.md)
# Everything else is plain Snakemake inside .venv (see README).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
SNAKEMAKE_ARGS ?=
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt requirements-data.txt pyproject.toml | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)

.PHONY: run test lint install install-dev system-deps dry-run clean chemprop

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

dry-run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --dry-run $(SNAKEMAKE_ARGS)

install: $(STAMP)

# One environment serves the workflow and its tests; the stamp re-installs when a pin changes.
$(STAMP): requirements.txt requirements-dev.txt requirements-data.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-data.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

# The benchmark peer lives in its own virtualenv: chemprop pins its own lightning and friends, and
# it is not a dependency of biomol-dl. The CPU torch build is the one the project pins.
CHEMPROP_VENV ?= .venv-chemprop
CHEMPROP_STAMP := $(CHEMPROP_VENV)/.installed-chemprop-2.3.1

chemprop: $(CHEMPROP_STAMP)

$(CHEMPROP_STAMP):
	test -x $(CHEMPROP_VENV)/bin/python || $(PYTHON) -m venv $(CHEMPROP_VENV)
	$(CHEMPROP_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHEMPROP_VENV)/bin/python -m pip install --quiet torch==2.13.0 chemprop==2.3.1
	touch $@

system-deps:
	bash tests/install_system_deps.sh

lint: $(STAMP)
	$(BIN)/ruff check scripts tests
	$(BIN)/ruff format --check scripts tests
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint --cores 1

test: $(STAMP) system-deps lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf .snakemake results/* logs resources/*/ && touch results/.gitkeep
