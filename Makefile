# The front door: `make run` and `make test` on a fresh machine with only Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

LOCK   := requirements-dev.lock
# The lock files are for CPython 3.11 on Linux x86_64 (what CI, the image and these machines run).
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28

.PHONY: run test lint bench install clean worker migrate lock examples docs docs-serve

# Reproducible installs: every package pinned with its hashes (requirements-dev.lock = core + dev),
# then the project itself without dependencies. `make lock` regenerates the lock files after a change
# of dependencies in pyproject.toml (tests/unit/test_lock.py fails until it is done).
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## Start the API on 127.0.0.1:8000 with an in-process worker, on the embedded PostgreSQL (or DATABASE_URL)
run: $(STAMP)
	$(BIN)/prm serve

worker: $(STAMP)
	$(BIN)/prm worker

migrate: $(STAMP)
	$(BIN)/prm migrate

## The whole test suite against a real PostgreSQL (embedded unless TEST_DATABASE_URL is set)
test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider --cov=prm --cov-report=term --cov-report=xml -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

## Re-record the response examples of the API reference (prm/<domain>/examples.json) by sending every example
examples: $(STAMP)
	PRM_RECORD_EXAMPLES=1 $(BIN)/python -m pytest -p no:cacheprovider -q tests/integration/test_api_examples.py

## The documentation site (docs/ + the API reference from the OpenAPI document) in build/site; strict:
## a broken link or anchor fails. `make docs-serve` previews it on http://127.0.0.1:8001
docs: $(STAMP)
	$(BIN)/prm openapi -o build/openapi.json
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

## Benchmarks print figures; they never fail the build
bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; LOG_LEVEL=WARNING PYTHONPATH=src $(BIN)/python $$script || exit 1; done

## Regenerate requirements.lock (core) and requirements-dev.lock (core + dev) with hashes, from pyproject.toml
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes $(LOCK_TARGET) --quiet -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes $(LOCK_TARGET) --quiet -o requirements-dev.lock

clean:
	rm -rf $(VENV) .pytest_cache .coverage coverage.xml htmlcov
