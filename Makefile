# The two commands of the README: `make dev` and `make test`. Both start from a
# fresh clone: they create .venv and install the project with its dev extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install dev test lint typecheck pytest package clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 12), "Python 3.11 or 3.12 is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

dev: install
	$(BIN)/lectern dev $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest $(ARGS)

test: lint typecheck pytest

# Deployable sources, one folder and zip per function, under build/functions/.
package: install
	$(BIN)/python -m scripts.package_functions

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
