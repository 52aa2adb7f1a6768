#!/usr/bin/env bash
# The long chaos run (18 minutes of faults by default; about 19 in all): builds chaos-runner and
# leader-worker (RelWithDebInfo) and runs them. Arguments go to chaos-runner and override the
# defaults, e.g.  tests/chaos/run-long.sh --seed 2026 --duration 900
# Results: summary.txt, timeline.svg, check.txt, faults.tsv and every worker's events in
# $CHAOS_BUILD_DIR/chaos-long-run (default build/chaos-long/chaos-long-run).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${CHAOS_BUILD_DIR:-$root/build/chaos-long}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DELECTION_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target chaos-runner leader-worker etcd-leash
# The etcd cluster dies with the runner, however it ends (cmake/etcd-fixture.sh, ETCD_FIXTURE_LEASH).
ETCD_FIXTURE_LEASH=$build/tests/etcd-leash exec "$build/tests/chaos/chaos-runner" --worker "$build/examples/leader-worker" \
  --fixture "$root/cmake/etcd-fixture.sh" --out "$build/chaos-long-run" --duration 1080 "$@"
