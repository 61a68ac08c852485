"""W1 with the server's metrics on and off, in one run: what they cost.
Each round runs W1 twice on fresh stacks, once with ORCHESTRATOR_HTTP_PORT
unset (no metrics) and once with it set (every RPC, transaction and task
event counted); the order flips each round so that the machine's drift
falls on both. Prints one JSON line on stdout; progress goes to stderr.

    python -m bench.metrics_overhead [--tasks 3000] [--rounds 3] [--slots 10]
                                     [--path sdk|raw] [--database sqlite|postgres]

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
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_overhead", description=__doc__)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--path", choices=("sdk", "raw"), default="sdk")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ns = parser.parse_args(argv)
    if min(ns.tasks, ns.rounds, ns.slots) < 1:
        parser.error("every count must be at least 1")
    base = w1.parse_args(
        [
            *("--tasks", str(ns.tasks), "--slots", str(ns.slots)),
            *("--path", ns.path, "--database", ns.database),
        ]
    )
    return base, ns.rounds


def run(off: w1.Args, rounds: int) -> dict[str, Any]:
    on = replace(off, metrics=True)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    # Server CPU per task: steadier than throughput on a machine doing
    # other work too.
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    for round_number in range(1, rounds + 1):
        order = (("off", off), ("on", on))
        for name, args in order if round_number % 2 else reversed(order):
            log(f"round {round_number}: metrics {name}")
            line = w1.run(args)
            rates[name].append(line["e2e_tasks_per_s"])
            cpu[name].append(line["server_cpu_ms_per_task"])
    off_rate = statistics.median(rates["off"])
    on_rate = statistics.median(rates["on"])
    return {
        "benchmark": "W1 metrics overhead",
        "tasks": off.tasks,
        "slots": off.slots,
        "path": off.path,
        "database": off.database,
        "rounds": rounds,
        "off_tasks_per_s": rates["off"],
        "on_tasks_per_s": rates["on"],
        "off_server_cpu_ms_per_task": cpu["off"],
        "on_server_cpu_ms_per_task": cpu["on"],
        # Of the medians without metrics.
        "overhead_percent": round(100 * (1 - on_rate / off_rate), 1),
        "server_cpu_overhead_percent": round(
            100 * (statistics.median(cpu["on"]) / statistics.median(cpu["off"]) - 1), 1
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    off, rounds = parse(argv)
    return main_of(lambda: run(off, rounds))


if __name__ == "__main__":
    sys.exit(main())
