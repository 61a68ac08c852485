"""The ratio table of one peer-harness run: our figures divided by each
peer's, all from the same results file, with the load average of the run.

    python ratios.py HARNESS_DIR/results/runs-STAMP.jsonl

Medians come from the harness's own summarize.py (next to the results
directory); the ranges from the file's raw lines. W1 tasks/s: above 1 we are
faster. W2 latency: below 1 we are faster.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

OURS = "orchestrator-"
Runs = dict[tuple[str, str], list[dict[str, Any]]]


def medians(results: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """summarize.py's medians, by (peer, workload)."""
    summarize = results.parent.parent / "summarize.py"
    out = subprocess.run(
        [sys.executable, str(summarize), str(results)], check=True, capture_output=True, text=True
    ).stdout
    found = {}
    for line in out.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            if "peer" in row:
                found[row["peer"], row.get("workload", "W1")] = row
        else:
            print(line)  # summarize.py's own report of failed runs
    return found


def raw_runs(results: Path) -> Runs:
    runs: Runs = defaultdict(list)
    for line in results.read_text().splitlines():
        if line.startswith("{") and "peer" in (row := json.loads(line)) and "error" not in row:
            runs[row["peer"], row.get("workload", "W1")].append(row)
    return runs


def spread(runs: list[dict[str, Any]], field: str) -> str:
    values = [r[field] for r in runs if r.get(field) is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:g}"
    return f"{statistics.median(values):g} ({min(values):g}-{max(values):g})"


def ratio(ours: dict[str, Any] | None, theirs: dict[str, Any] | None, field: str) -> str:
    if not ours or not theirs or not theirs.get(field) or ours.get(field) is None:
        return "-"
    return f"{ours[field] / theirs[field]:.2f}x"


def table(
    title: str,
    workload: str,
    fields: list[str],
    med: dict[tuple[str, str], dict[str, Any]],
    runs: Runs,
) -> None:
    """One row per system; ours first, then each peer with our medians
    divided by its median, field by field."""
    found = {p for p, w in runs if w == workload}
    ours = [p for p in (f"{OURS}sqlite", f"{OURS}postgres") if p in found]
    peers = ours + sorted(found - set(ours))
    header = ["system", "reps", *fields]
    header += [f"{o.removeprefix(OURS)} / peer: {f}" for o in ours for f in fields]
    print(f"\n{title}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for peer in peers:
        row = [peer, str(len(runs[peer, workload]))]
        row += [spread(runs[peer, workload], f) for f in fields]
        theirs = None if peer in ours else med.get((peer, workload))
        row += [ratio(med.get((o, workload)), theirs, f) for o in ours for f in fields]
        print("| " + " | ".join(row) + " |")


def our_costs(runs: Runs) -> None:
    print("\nOur cost per task (server / worker CPU ms, median (range)) and load average:")
    for (peer, workload), rows in sorted(runs.items()):
        if not peer.startswith(OURS):
            continue
        loads = [r["load_avg_1m"][k] for r in rows for k in ("start", "end") if "load_avg_1m" in r]
        load = f"{min(loads):g}-{max(loads):g}" if loads else "-"
        print(
            f"  {peer} {workload}: server {spread(rows, 'server_cpu_ms_per_task')}, "
            f"worker {spread(rows, 'worker_cpu_ms_per_task')}, load 1m {load}"
        )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    results = Path(argv[0])
    med = medians(results)
    runs = raw_runs(results)
    print(f"Ratios from {results} (median of reps; ranges in brackets)")
    table(
        "W1 (ratio above 1: we are faster)",
        "W1",
        ["e2e_tasks_per_s", "enqueue_per_s"],
        med,
        runs,
    )
    table(
        "W2, submit to start ms (ratio below 1: we are faster)",
        "W2",
        ["lat_ms_p50", "lat_ms_p99"],
        med,
        runs,
    )
    our_costs(runs)
    loads = results.with_name(results.stem + ".loadavg.txt")
    if loads.exists():
        print(f"\nLoad average before each rep and workload ({loads.name}; 2 CPUs = 2.0):")
        print(loads.read_text().rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
