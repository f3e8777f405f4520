# The two commands of the README: `make dev` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.deps-stamp
TEST_PROCESSES ?= 3

.PHONY: dev test lint clean

# uv installs the same packages from the same index as pip, in seconds instead of a minute or more
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

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
