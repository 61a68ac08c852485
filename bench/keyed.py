"""W1 with and without concurrency keys, in one run: what the control costs.
Each round runs W1 (raw path) twice on fresh stacks, once with plain tasks
and once with every task naming one of `--keys` keys of limit `--limit`;
the rounds alternate so that the machine's drift falls on both. Prints one
JSON line on stdout; progress goes to stderr.

    python -m bench.keyed [--tasks 2000] [--keys 100] [--limit 5] [--rounds 2]
                          [--slots 10] [--database sqlite|postgres]

Exit codes as bench.w1's. See bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bench import w1
from bench._harness import main_of
from bench._procs import log


def parse(argv: Sequence[str] | None) -> tuple[w1.Args, int]:
    parser = argparse.ArgumentParser(prog="python -m bench.keyed", description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ns = parser.parse_args(argv)
    if min(ns.tasks, ns.keys, ns.limit, ns.rounds, ns.slots) < 1:
        parser.error("every count must be at least 1")
    base = w1.parse_args(
        [
            *("--tasks", str(ns.tasks), "--slots", str(ns.slots), "--path", "raw"),
            *("--database", ns.database, "--concurrency-limit", str(ns.limit)),
        ]
    )
    return replace(base, concurrency_keys=ns.keys), ns.rounds


def run(keyed: w1.Args, rounds: int) -> dict[str, Any]:
    plain = replace(keyed, concurrency_keys=0)
    rates: dict[str, list[float]] = {"plain": [], "keyed": []}
    for round_number in range(1, rounds + 1):
        for name, args in (("plain", plain), ("keyed", keyed)):
            log(f"round {round_number}: {name}")
            rates[name].append(w1.run(args)["e2e_tasks_per_s"])
    plain_rate = statistics.median(rates["plain"])
    keyed_rate = statistics.median(rates["keyed"])
    return {
        "benchmark": "W1 keyed",
        "tasks": keyed.tasks,
        "slots": keyed.slots,
        "database": keyed.database,
        "concurrency_keys": keyed.concurrency_keys,
        "concurrency_limit": keyed.concurrency_limit,
        "rounds": rounds,
        "plain_tasks_per_s": rates["plain"],
        "keyed_tasks_per_s": rates["keyed"],
        # Of the plain run's median throughput.
        "control_cost_percent": round(100 * (1 - keyed_rate / plain_rate), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    keyed, rounds = parse(argv)
    return main_of(lambda: run(keyed, rounds))


if __name__ == "__main__":
    sys.exit(main())
