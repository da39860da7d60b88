# Every target works on a fresh machine with only python3 and make: .venv is made on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check obs tests benchmarks examples
	$(BIN)/ruff format --check obs tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python -m obs.demo

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_capture.py
	$(BIN)/python benchmarks/bench_import.py
	$(BIN)/python benchmarks/bench_e2e.py
	$(BIN)/python benchmarks/bench_decorators.py
	$(BIN)/python benchmarks/bench_llm.py
	$(BIN)/python benchmarks/bench_flags.py
	$(BIN)/python benchmarks/bench_soak.py

clean:
	rm -rf $(VENV) .obs .pytest_cache .mypy_cache .ruff_cache
