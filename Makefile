# Every target installs what it needs into .venv first, so a fresh clone needs only `make test`
# or `make run`. What is installed is requirements.lock: exact versions with their hashes, for
# the runtime, the dev tools and the build backend (pip and setuptools included), so a fresh
# clone gets what the last green run had. `make lock` refreshes it; `make test-latest` tries the
# newest releases that pyproject.toml's ranges allow. The stamp is rebuilt when either changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
SOURCES := reconciler serve tests bench integrations

.PHONY: venv run test test-latest lock check format lint types bench soak clean

define check_python
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "samops needs Python >= 3.11 (set PYTHON=...)")'
endef

$(STAMP): pyproject.toml $(LOCK)
	$(check_python)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	@$(BIN)/python -m pip install -qq --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Resolve pyproject.toml's ranges (runtime, the dev extra, pip and the build backend) to exact
# versions with hashes, for every platform and Python >= 3.11.
lock:
	@test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
		$(BIN)/python -m pip install --quiet "$$(grep -o 'uv==[0-9.]*' pyproject.toml)"; }
	@printf 'pip\nsetuptools>=77\n' | $(BIN)/uv pip compile --quiet --universal \
		--python-version 3.11 --generate-hashes --extra dev \
		--custom-compile-command 'make lock' --output-file $(LOCK) pyproject.toml -
	@echo "$(LOCK) refreshed: review the diff, then make test"

# The newest releases pyproject.toml allows, in a venv of their own, then every test: a broken
# upstream release shows up here on purpose rather than in a newcomer's clone.
LATEST := .venv-latest
test-latest:
	$(check_python)
	@test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	@$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade --upgrade-strategy eager -e '.[dev]'
	@$(LATEST)/bin/python -m pip list --format freeze --disable-pip-version-check > $(LATEST)/versions.txt
	@echo "test-latest: versions in $(LATEST)/versions.txt"
	$(LATEST)/bin/pytest $(PYTEST_ARGS)

venv: $(STAMP)

# The demo database behind the example SqlPlugin (manifests/connections/stackademy-db.yaml).
data/stackademy.sqlite3: manifests/data/stackademy.sql | venv
	@mkdir -p data
	@rm -f $@
	@$(BIN)/python -c 'import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.executescript(open(sys.argv[2]).read()); db.commit()' $@ $<

# Follows this checkout's manifests/ (committed state; a commit is applied at once) when this
# is a git checkout, the folder otherwise; SQLite in data/; http://127.0.0.1:8080 (SAMOPS_PORT).
run: export STACKADEMY_API_TOKEN ?= demo-token
run: export SAMOPS_SECRETS_ENV ?= STACKADEMY_API_TOKEN
run: venv data/stackademy.sqlite3
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		exec $(BIN)/samops run --demo --repo . --path manifests; \
	else \
		exec $(BIN)/samops run --demo manifests; \
	fi

# Four workers (pytest-xdist) on any machine: most of the suite's time is spent waiting on the
# daemons and servers it starts, so even two cores keep four busy (about 5 minutes here instead
# of 21). Every test runs alone or beside any other: its own temporary folders, databases and
# ports. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 4
test: venv
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

format: venv
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

lint: venv
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/ruff check $(SOURCES)

types: venv
	$(BIN)/mypy

check: lint types test

# Every benchmark scenario, about 5 minutes; a report in bench/reports/ (docs/bench.md).
# BENCH_ARGS='--only chat --chat-requests 200' to choose; `$(BIN)/python -m bench --help`.
bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)

# Chat load against a real `samops run` while a commit lands every second, with the fault
# drills (docs/soak.md). SOAK_SECONDS=30 for a shorter run; SOAK_ARGS=--no-drills to skip them.
SOAK_SECONDS ?= 120
soak: venv
	$(BIN)/python -m bench.soak --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(LATEST) data .pytest_cache .mypy_cache .ruff_cache build *.egg-info
