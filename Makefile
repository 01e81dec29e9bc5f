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

.PHONY: setup study test lint clean-study runs leaderboard ship benchmark-training browser benchmarks benchmark-realtime benchmark-robustness

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

# The browser test (tests/test_serve_browser.py) drives Debian's Chromium: installed here when
# missing and we are root with apt (as in CI); otherwise install chromium and chromium-driver
# yourself, or set FER_STUDY_SKIP_BROWSER_TESTS=1 to skip that test on purpose.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$FER_STUDY_SKIP_BROWSER_TESTS" = 1 ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver >/dev/null; \
	else \
		echo "chromium/chromedriver missing and cannot be installed here (not root with apt):"; \
		echo "the browser test will fail; FER_STUDY_SKIP_BROWSER_TESTS=1 skips it"; \
	fi

test: $(BIN)/.installed-test browser
	$(BIN)/python -m ruff check fer_study tests scripts
	$(BIN)/python -m pytest -q

# The committed runs behind the real-data results (configs/runs/*.json): many hours on 2 CPU
# cores, resumable (re-run to continue); needs data/fer2013.csv. NAMES=... picks runs.
runs: setup
	$(BIN)/python -m fer_study runs $(NAMES)

# Score every committed run and the PublicTest-chosen ensembles (configs/leaderboard.json),
# the ablation table and the bf16/float32 parity runs (runs not trained yet are listed);
# `make ship` then ships the leaderboard's deployable pick as the package's default model.
leaderboard: setup
	$(BIN)/python -m fer_study leaderboard --spec configs/leaderboard.json
	$(BIN)/python -m fer_study leaderboard --spec configs/leaderboard_ablation.json
	$(BIN)/python -m fer_study leaderboard --spec configs/leaderboard_precision.json

ship: setup
	$(BIN)/python -m fer_study ship --from-leaderboard reports/results/best_models.json --data data/fer2013.csv

benchmark-training: setup
	$(BIN)/python -m fer_study benchmark-training

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
