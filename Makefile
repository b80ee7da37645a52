# definet: `make install` builds .venv with the CPU torch wheel; `make test` installs if needed and runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0

.PHONY: install test lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]" "$(TORCH)"
	touch $(STAMP)

test: install
	$(BIN)/ruff check definet_core workflows launchpad tests bench
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check definet_core workflows launchpad tests bench

demo: install
	$(BIN)/definet demo

bench: install
	$(BIN)/python bench/bench_predict.py

clean:
	rm -rf $(VENV) build *.egg-info
