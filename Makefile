# Every target installs what it needs into .venv first, so a fresh clone needs only `make test`
# or `make run`. The stamp file is rebuilt when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := reconciler serve tests bench integrations

.PHONY: venv run test check format lint types bench soak clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "samops needs Python >= 3.11 (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# The demo database behind the example SqlPlugin (manifests/connections/stackademy-db.yaml).
data/stackademy.sqlite3: manifests/data/stackademy.sql | venv
	@mkdir -p data
	@rm -f $@
	@$(BIN)/python -c 'import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.executescript(open(sys.argv[2]).read()); db.commit()' $@ $<

# Follows this checkout's manifests/ (committed state; a commit is applied at once) when this
# is a git checkout, the folder otherwise; SQLite in data/; http://127.0.0.1:8080 (SAMOPS_PORT).
run: export STACKADEMY_API_TOKEN ?= demo-token
run: venv data/stackademy.sqlite3
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		exec $(BIN)/samops run --demo --repo . --path manifests; \
	else \
		exec $(BIN)/samops run --demo manifests; \
	fi

test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

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
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache build *.egg-info
