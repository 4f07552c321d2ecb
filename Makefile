# queuekit developer commands. Every target sets up what it needs on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# What ships: queuekit's hot path compiled with mypyc (see pyproject.toml), installed as a
# wheel, not editable. Rebuilt (about two minutes) whenever a source file changed.
COMPILED := .venv-compiled
COMPILED_BIN := $(COMPILED)/bin
COMPILED_STAMP := $(COMPILED)/.installed-stamp
SOURCES := $(shell find src -name '*.py' -o -name '*.typed' 2>/dev/null)

.PHONY: install compiled run test test-fast test-interpreted test-compiled lint format bench bench-floor bench-instructions brokers brokers-stop clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet --editable ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install queuekit (editable, interpreted) with its dev dependencies.

$(COMPILED_STAMP): pyproject.toml $(SOURCES)
	@test -x $(COMPILED_BIN)/python || $(PYTHON) -m venv $(COMPILED)
	@$(COMPILED_BIN)/pip install --quiet --upgrade pip
	@# From a copy: the build leaves its .so files beside the sources, where the editable
	@# .venv would import them in place of the .py files.
	rm -rf build/compiled && mkdir -p build/compiled && cp -r pyproject.toml README.md src build/compiled/
	HATCH_BUILD_HOOKS_ENABLE=1 $(COMPILED_BIN)/pip install --quiet "./build/compiled[dev]"
	@$(COMPILED_BIN)/python -c "import queuekit.message as m, sys; sys.exit(0 if m.COMPILED else 'queuekit was not compiled')"
	@touch $(COMPILED_STAMP)

compiled: $(COMPILED_STAMP) ## Build the mypyc-compiled queuekit into .venv-compiled (needs a C compiler).

run: $(STAMP) ## API + worker + dashboard on embedded SQLite, on http://127.0.0.1:8080.
	LOG_FORMAT=$${LOG_FORMAT:-text} $(BIN)/queuekit run

# The interpreted pass leaves out the tests of the network brokers: their code is the same
# source in both builds, and the code paths that differ by build (the native Message and
# Context constructors) run on every backend, the embedded ones included.
INTERPRETED_SKIPS := $(foreach b,kafka rabbitmq redis,--ignore=tests/conformance/test_$(b).py --ignore=tests/backends/test_$(b).py)

test: $(STAMP) $(COMPILED_STAMP) lint brokers ## Lint, start the real brokers, test the compiled build, then the interpreted one.
	$(COMPILED_BIN)/pytest
	$(BIN)/pytest $(INTERPRETED_SKIPS)

test-compiled: $(COMPILED_STAMP) brokers ## Every test against the compiled build (what ships).
	$(COMPILED_BIN)/pytest

test-interpreted: $(STAMP) brokers ## Every test against the editable, interpreted source.
	$(BIN)/pytest

test-fast: $(STAMP) ## Only the tests that need no broker server.
	$(BIN)/pytest -m "not broker"

lint: $(STAMP) ## ruff and mypy --strict.
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix src tests examples benchmarks
	$(BIN)/ruff format src tests examples benchmarks

brokers: ## Start Redis, RabbitMQ and Kafka on 127.0.0.1 (installs them when missing).
	scripts/brokers start

brokers-stop:
	scripts/brokers stop

bench: $(COMPILED_STAMP) brokers ## Side-by-side throughput: raw clients vs queuekit (compiled).
	$(COMPILED_BIN)/python -m benchmarks

bench-floor: $(COMPILED_STAMP) brokers ## Kafka: raw client vs the floor of an asyncio design vs queuekit.
	$(COMPILED_BIN)/python -m benchmarks.kafka_floor

bench-instructions: $(COMPILED_STAMP) brokers ## Kafka: instructions per message, per thread (needs valgrind).
	$(COMPILED_BIN)/python -m benchmarks.instructions

clean:
	rm -rf .queuekit .pytest_cache .mypy_cache .ruff_cache build
