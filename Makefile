# The verbs a newcomer needs. Every target sets up .venv first (idempotent):
# run and dev with what running the server needs, the others with the
# development tools too (scripts/setup).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup setup-run run dev test test-sqlite test-postgres lint lock proto bench bench-peers clean

setup:
	@scripts/setup dev

setup-run:
	@scripts/setup run

## Start the server on SQLite (./orchestrator.db).
run: setup-run
	$(VENV)/orchestrator serve

## Server, demo worker and an admin account in one command.
dev: setup-run
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
	$(VENV)/python scripts/lockfile.py check

## Recompile requirements/*.txt after a change to pyproject.toml's dependencies
## (UPGRADE=1: every pin to the newest release pyproject.toml allows).
lock: setup
	scripts/lock

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
