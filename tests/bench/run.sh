#!/usr/bin/env bash
# Runs the benchmarks of tests/bench, each on its own private etcd, and writes the results as
# a Markdown table (bench-results.md) and JSON (bench-results.json).
#
#   tests/bench/run.sh [--quick] [--out DIR] [--bin-dir DIR] [--only SCENARIO]...
#
#   --out DIR      where the results go (default: build/bench-results)
#   --bin-dir DIR  where election-bench and bench-candidate are; without it, build/release
#                  (RelWithDebInfo, no sanitizers) is configured and built first
#   --quick        few rounds, 100 instead of 1,000 observers/participants (the ctest smoke run)
#   --only S       run only scenario S (handover, lock, failover, fanout, scale, shards, startup);
#                  repeatable
#
# Full mode takes about 6 minutes (plus the build). Benchmark on a quiet machine: the load
# average at the start is recorded beside the results. Exits non-zero if a scenario could not
# run (a missed target is reported in the table, not as a failure).
set -euo pipefail

usage() { sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
invocation="tests/bench/run.sh${*:+ $*}"
quick=0
out=$root/build/bench-results
bin=
only=()
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    --bin-dir) bin=${2:?--bin-dir needs a directory}; shift ;;
    --only) only+=("${2:?--only needs a scenario}"); shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

for tool in etcd etcdctl; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (Debian: etcd-server, etcd-client)" >&2; exit 1; }
done

if [[ -z $bin ]]; then
  build=$root/build/release
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELECTION_SANITIZE=OFF \
    -DELECTION_BUILD_TESTS=ON -DELECTION_BUILD_BENCH=ON >/dev/null
  cmake --build "$build" --target election-bench bench-candidate -j 2
  bin=$build/tests/bench
fi
[[ -x $bin/election-bench && -x $bin/bench-candidate ]] ||
  { echo "run.sh: no election-bench and bench-candidate in $bin" >&2; exit 1; }

scenarios=(handover lock failover fanout scale shards startup)
((${#only[@]})) && scenarios=("${only[@]}")
mode=full
flags=()
((quick)) && { mode=quick; flags=(--quick); }

mkdir -p "$out"
rm -f "$out"/{handover,lock,failover,fanout,scale,shards,startup}.tsv "$out"/bench-results.{md,json}
ELECTION_BENCH_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
: "${ELECTION_BENCH_REVISION:=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)}"
export ELECTION_BENCH_LOAD ELECTION_BENCH_REVISION
echo "run.sh: $mode mode, load average $ELECTION_BENCH_LOAD on $(nproc) cores, results in $out"

failed=()
started=$SECONDS
for s in "${scenarios[@]}"; do
  t=$SECONDS
  if "$bin/election-bench" "$s" "${flags[@]}" --out "$out" --candidate "$bin/bench-candidate"; then
    echo "run.sh: $s took $((SECONDS - t)) s"
  else
    echo "run.sh: $s FAILED after $((SECONDS - t)) s" >&2
    failed+=("$s")
  fi
done

"$bin/election-bench" report --out "$out" --mode "$mode" --command "$invocation" || true
echo
cat "$out/bench-results.md"
echo
echo "run.sh: $mode run took $((SECONDS - started)) s"
if ((${#failed[@]})); then
  echo "run.sh: failed: ${failed[*]}" >&2
  exit 1
fi
