# The two commands of the README: `make dev` and `make test`. Both start from a
# fresh clone: they create .venv and install requirements.lock (runtime and dev) and the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Every dependency, transitive ones included, pinned with hashes (`make lock`).
LOCK := requirements.lock
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install lock dev test lint typecheck pytest package bench clean

install: $(STAMP)

# The lock with --require-hashes, then the project alone. Re-runs when the lock
# or pyproject.toml changes, and removes what the lock no longer lists, so
# .venv holds exactly the lock (plus pip, setuptools and lectern itself).
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 12), "Python 3.11 or 3.12 is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r $(LOCK)
	$(PIP) install --quiet --no-deps -e .
	$(BIN)/python -c "$$UNLOCKED" $(LOCK) | xargs -r $(PIP) uninstall --quiet --yes
	touch $(STAMP)

# Installed distributions the lock does not list, one a line.
define UNLOCKED
import re, sys
from importlib.metadata import distributions
canon = lambda name: re.sub(r"[-_.]+", "-", name).lower()
locked = {canon(m) for m in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", open(sys.argv[1]).read(), re.M)}
installed = {canon(d.metadata["Name"]) for d in distributions()}
for name in sorted(installed - locked - {"pip", "setuptools", "lectern"}):
    print(name)
endef
export UNLOCKED

# Re-resolves pyproject.toml's ranges (runtime and dev) for CPython 3.11 and 3.12
# on any platform, keeping the locked versions that still fit; add
# ARGS=--upgrade (or ARGS='--upgrade-package NAME') to move them.
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--generate-hashes --custom-compile-command "make lock" --quiet -o $(LOCK) $(ARGS)

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

# Every benchmark in benchmarks/ in quick mode (under 10 minutes), with the
# load beside each figure; timing stays out of `make test`.
bench: install
	$(BIN)/python -m benchmarks.bench $(ARGS)

# Deployable sources, one folder and zip per function, under build/functions/.
package: install
	$(BIN)/python -m scripts.package_functions

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
