# The two commands of the README:
#   make study   # set up the environment and run the whole study (synthetic demo data by default)
#   make test    # set up the environment and run the test suite
# Variables: PROFILE=demo|cpu|full  DATA=path/to/fer2013.csv  FERPLUS=path/to/fer2013new.csv
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROFILE ?= demo
DATA ?=
FERPLUS ?=
ARGS ?=

.PHONY: setup study test lint clean-study

# Two stamps: the study's environment, and on top of it what only the tests need (MLflow and
# JAX, for the tracking and keras.distribution tests), so `make study` never waits for them.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test,tracking,jax]"
	touch $@

setup: $(BIN)/.installed

study: setup
	$(BIN)/python -m fer_study study --profile $(PROFILE) $(if $(DATA),--data $(DATA)) $(if $(FERPLUS),--ferplus $(FERPLUS)) $(ARGS)

test: $(BIN)/.installed-test
	$(BIN)/python -m ruff check fer_study tests scripts
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/python -m ruff check fer_study tests scripts
