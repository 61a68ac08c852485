#!/usr/bin/env bash
# `make bench-peers`: the shared peer harness (../shared/peers, read-only) with
# our server added as a peer, W1 and W2 for PEERS, REPS interleaved by the
# harness's own run_all.sh, then its summarize.py medians and our ratio table.
#   PEERS   default "orchestrator orchestrator_pg celery dramatiq procrastinate"
#           (celery = prefork and threads in W1, prefork in W2, as run_all.sh does)
#   REPS    default 3;  BENCH_N  W1 tasks, default 5000 (W2: 300 at 50/s)
#   PEERS_WORK  a harness copy to reuse (its .venv makes setup quick);
#           default: a new temp dir, kept for its results/ and removed by you
#   BASELINES   run_all.sh's raw baselines, default none ("grpc_echo sqlite asyncpg")
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
SRC=${PEERS_SRC:-$REPO/../shared/peers}
WORK=${PEERS_WORK:-$(mktemp -d /tmp/orch-bench-peers.XXXXXX)}
export PEERS=${PEERS:-"orchestrator orchestrator_pg celery dramatiq procrastinate"}
export REPS=${REPS:-3}
export BASELINES=${BASELINES:-}
export ORCH_REPO=$REPO

mkdir -p "$WORK"
cp -r "$SRC/." "$WORK/"
chmod -R u+w "$WORK"   # the source is read-only; the copy writes results/ and .venv/
cp "$REPO"/bench/peers/{peer_orchestrator.py,run_orchestrator.sh,run_orchestrator_pg.sh} "$WORK/"
# run_all.sh fixes N per workload; only W1's is made a knob (BENCH_N), so a
# quick pass can be small. Refuse to run if the harness changed under us.
sed -i "s/BENCH_WORKLOAD=W1 BENCH_N=5000/BENCH_WORKLOAD=W1 BENCH_N=${BENCH_N:-5000}/" "$WORK/run_all.sh"
if [ "$(grep -c "BENCH_WORKLOAD=W1 BENCH_N=${BENCH_N:-5000}" "$WORK/run_all.sh")" != 2 ]; then
  echo "bench-peers: $SRC/run_all.sh no longer has the expected W1 lines" >&2
  exit 1
fi
"$WORK/setup.sh" 2>&1 | { grep -v "^WARNING: Location" || true; } >&2

before=$(ls "$WORK"/results/runs-*.jsonl 2>/dev/null || true)
echo "load average at start: $(cat /proc/loadavg)" >&2
"$WORK/run_all.sh"
echo "load average at end: $(cat /proc/loadavg)" >&2
out=$(comm -13 <(echo "$before") <(ls "$WORK"/results/runs-*.jsonl))
"$REPO/.venv/bin/python" "$REPO/bench/peers/ratios.py" "$out"
echo "results: $out (stderr of the runs: $WORK/results/stderr.log)" >&2
[ -n "${PEERS_WORK:-}" ] || echo "reuse with PEERS_WORK=$WORK; rm -rf $WORK when done" >&2
