"""Benchmarks of the orchestrator, run against real server and worker processes.

`python -m bench.w1` (also `make bench`): see bench/README.md.
"""
