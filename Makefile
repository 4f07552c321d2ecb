# queuekit developer commands. Every target sets up what it needs on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-fast lint format bench bench-floor bench-instructions brokers brokers-stop clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet --editable ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install queuekit with its dev dependencies.

run: $(STAMP) ## API + worker + dashboard on embedded SQLite, on http://127.0.0.1:8080.
	LOG_FORMAT=$${LOG_FORMAT:-text} $(BIN)/queuekit run

test: $(STAMP) lint brokers ## Lint, start the real brokers, run every test.
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

bench: $(STAMP) brokers ## Side-by-side throughput: raw clients vs queuekit.
	$(BIN)/python -m benchmarks

bench-floor: $(STAMP) brokers ## Kafka: raw client vs the floor of an asyncio design vs queuekit.
	$(BIN)/python -m benchmarks.kafka_floor

bench-instructions: $(STAMP) brokers ## Kafka: instructions per message, per thread (needs valgrind).
	$(BIN)/python -m benchmarks.instructions

clean:
	rm -rf .queuekit .pytest_cache .mypy_cache .ruff_cache
