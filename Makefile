# Every target works on a fresh machine with only python3 and make: .venv is made on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck docs docs-check bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check obs tests benchmarks examples docs/_ext
	$(BIN)/ruff format --check obs tests benchmarks examples docs/_ext
	$(BIN)/lint-imports --no-cache  # the one-way layers ([tool.importlinter] in pyproject.toml)

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site (mkdocs + material + mkdocstrings), built offline: `make docs` writes site/;
# docs-check builds it with --strict into a scratch directory, so a broken link, anchor or API reference
# fails `make test`.
DOCS_ENV := NO_MKDOCS_2_WARNING=1

docs: $(STAMP)
	$(DOCS_ENV) $(BIN)/mkdocs build --strict

docs-check: $(STAMP)
	@d=$$(mktemp -d) && $(DOCS_ENV) $(BIN)/mkdocs build --strict --quiet --site-dir $$d; rc=$$?; rm -rf $$d; exit $$rc

test: lint typecheck docs-check
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/obs demo

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_capture.py
	$(BIN)/python benchmarks/bench_import.py
	$(BIN)/python benchmarks/bench_coldstart.py
	$(BIN)/python benchmarks/bench_e2e.py
	$(BIN)/python benchmarks/bench_decorators.py
	$(BIN)/python benchmarks/bench_llm.py
	$(BIN)/python benchmarks/bench_flags.py
	$(BIN)/python benchmarks/bench_soak.py
	$(BIN)/python benchmarks/peers.py

clean:
	rm -rf $(VENV) .obs .pytest_cache .mypy_cache .ruff_cache site
