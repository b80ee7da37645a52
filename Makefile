# definet: `make install` builds .venv with the CPU torch wheel and the versions pinned in constraints.txt;
# `make test` installs if needed and runs the suite; `make lock` refreshes constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
# Extra pip arguments for the torch install, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# where the package index's default torch wheel is a CUDA build (Linux x86-64 on PyPI).
TORCH_PIP_ARGS ?=
CONSTRAINTS := constraints.txt
LOCK_VENV := .venv-lock

.PHONY: install lock test lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) $(TORCH_PIP_ARGS) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[test]" "$(TORCH)"
	touch $(STAMP)

# Refresh constraints.txt: a fresh venv resolved from pyproject.toml's ranges alone (no constraints), ruff and
# the whole test suite in it, then its `pip freeze --all` (definet and pip left out, torch kept at $(TORCH)).
# constraints.txt changes only when the tests pass; review its diff and commit it with what needed it.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet "$(TORCH)"
	$(LOCK_VENV)/bin/python -m pip install --quiet -e ".[test]" "$(TORCH)"
	$(LOCK_VENV)/bin/ruff check definet_core workflows launchpad tests bench
	$(LOCK_VENV)/bin/python -m pytest -q tests
	{ sed -n '/^#/p' $(CONSTRAINTS); \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable | grep -v -i -E '^(definet|pip)[=@ ]' \
	    | sed 's/^torch==.*/$(TORCH)/'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(LOCK_VENV)

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
	rm -rf $(VENV) $(LOCK_VENV) build *.egg-info
