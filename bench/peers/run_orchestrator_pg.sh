#!/usr/bin/env bash
# run_orchestrator.sh with the server on PostgreSQL (a fresh database per run).
BENCH_DATABASE=postgres exec "$(dirname "$0")/run_orchestrator.sh"
