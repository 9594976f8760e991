# chanlab: two commands on a fresh machine, `make demo` and `make test`.
# Every target bootstraps .venv on first use; bitcoind is found or provisioned by chanlab itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit integration bench lint bitcoind clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

bitcoind: $(STAMP)
	$(BIN)/chanlab bitcoind install

demo: bitcoind
	$(BIN)/chanlab demo

test: bitcoind
	$(BIN)/python -m pytest tests

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check channel regtest chanlab tests examples
	$(BIN)/mypy

bench: bitcoind
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
