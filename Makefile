# The two commands of the README:
#   make study   # set up the environment and run the whole study (synthetic demo data by default)
#   make test    # set up the environment and run the test suite
# Variables: PROFILE=demo|cpu|full  DATA=path/to/fer2013.csv  FERPLUS=path/to/fer2013new.csv
# Other targets: lint, clean-study (the demo and smoke studies' outputs; never reports/),
#   benchmark-realtime, benchmark-robustness DATA=path/to/fer2013.csv (write reports/results/)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROFILE ?= demo
DATA ?=
FERPLUS ?=
ARGS ?=

.PHONY: setup study test lint clean-study benchmarks benchmark-realtime benchmark-robustness

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(BIN)/.installed

study: setup
	$(BIN)/python -m fer_study study --profile $(PROFILE) $(if $(DATA),--data $(DATA)) $(if $(FERPLUS),--ferplus $(FERPLUS)) $(ARGS)

test: setup
	$(BIN)/python -m ruff check fer_study tests scripts
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/python -m ruff check fer_study tests scripts

# The demo and smoke studies write git-ignored folders; the committed reports/ (the real
# FER2013 study) and runs of the cpu and full profiles are never removed here.
clean-study:
	rm -rf reports/demo reports/smoke runs/demo runs/smoke

benchmarks: benchmark-realtime benchmark-robustness

benchmark-realtime: setup
	$(BIN)/python scripts/benchmark_realtime.py $(if $(DATA),--accuracy-data $(DATA)) $(ARGS)

benchmark-robustness: setup
	$(if $(DATA),,$(error benchmark-robustness needs DATA=path/to/fer2013.csv))
	$(BIN)/python scripts/benchmark_robustness.py --data $(DATA) $(ARGS)
