# The front door: `make run` and `make test` on a fresh machine with only Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench install clean worker migrate

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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

## Benchmarks print figures; they never fail the build
bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; LOG_LEVEL=WARNING PYTHONPATH=src $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .coverage coverage.xml htmlcov
