# The verbs a newcomer needs. Every target sets up .venv first (idempotent).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup run dev test test-sqlite test-postgres lint proto bench bench-peers clean

setup:
	@scripts/setup

## Start the server on SQLite (./orchestrator.db).
run: setup
	$(VENV)/orchestrator serve

## Server, demo worker and an admin account in one command.
dev: setup
	$(VENV)/orchestrator dev

## The whole suite: lint, types, then the tests on SQLite and on PostgreSQL.
test: setup lint test-sqlite test-postgres

test-sqlite: setup
	scripts/browser
	$(VENV)/pytest $(PYTEST_ARGS)

test-postgres: setup
	ORCHESTRATOR_TEST_DATABASE=postgres $(VENV)/pytest tests/integration tests/e2e $(PYTEST_ARGS)

lint: setup
	$(VENV)/ruff check src tests bench scripts
	$(VENV)/ruff format --check src tests bench scripts
	$(VENV)/mypy

## Regenerate src/orchestrator/proto from proto/orchestrator/*.proto.
proto: setup
	$(VENV)/python scripts/gen_proto.py

bench: setup
	$(VENV)/python -m bench.w1
	$(VENV)/python -m bench.w2

## Our W1/W2 beside the peers of ../shared/peers, one interleaved run, ratio table
## (PEERS, REPS, BENCH_N, PEERS_WORK: see bench/peers/run.sh).
bench-peers: setup
	bench/peers/run.sh

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
