# The two commands of the README's quick start: `make run` and `make test`.
# Both create .venv and install Kairos (with its dev extras) when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test lint unit bench clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The benchmark's peer pipeline (Quix Streams) is an extra of its own: only `make bench` needs it.
$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

run: $(STAMP)
	$(VENV)/bin/kairos dev

test: $(STAMP) lint
	$(VENV)/bin/pytest -q

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(BENCH_STAMP)
	$(VENV)/bin/python -m bench.throughput

clean:
	rm -rf $(VENV) .kairos *.egg-info
