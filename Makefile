# The two commands of the README: `make dev` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.deps-stamp
LOCK   := constraints.txt
TEST_PROCESSES ?= 4

.PHONY: dev test lint lock clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv

# uv installs the same packages from the same index as pip, in seconds instead of a minute or more; the
# versions are the lock's (constraints.txt), as in CI and the image (deploy/build-wheels.sh)
$(STAMP): pyproject.toml $(LOCK) | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

# after a change to pyproject.toml's dependencies: pins move only where they must (UPGRADE=--upgrade moves
# all); tests/test_floors.py checks that the lock satisfies pyproject.toml
lock: | $(BIN)/uv  ## constraints.txt from pyproject.toml, for every platform, on Python 3.11
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --quiet \
		$(UPGRADE) --custom-compile-command "make lock" -o $(LOCK)

dev: $(STAMP)  ## set up and run the whole product locally (embedded Redis, sandbox API, demo job)
	$(BIN)/relay dev

test: $(STAMP)  ## run the whole test suite against private servers
	PYTHON=$(BIN)/python sh tests/system-tools.sh
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist load --maxschedchunk 1 --durations=15 $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff, and the layout's import contracts (docs/architecture.md)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .import_linter_cache
