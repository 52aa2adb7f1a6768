#!/usr/bin/env bash
# The demo: three leader-gated workers on etcd; the leader crashes, then the next one stops cleanly.
#
#   scripts/demo.sh                      a private etcd (Debian etcd-server) on a free loopback port
#   scripts/demo.sh --endpoints H:P,...  an etcd cluster that is already running instead
#   scripts/demo.sh --build DIR          build and use leader-worker in DIR (default build/release)
#   scripts/demo.sh --ttl N              the workers' lease TTL in seconds (default 5)
#
# Installs the Debian packages it needs (scripts/install-deps.sh: root or sudo), builds leader-worker,
# starts three workers with --json, SIGKILLs the leader (failover: its lease must expire first),
# SIGTERMs the new leader (handover: it resigns), prints a summary from the workers' own output,
# and stops everything it started, by pid. Exits non-zero if leadership ever overlapped, a failover
# took longer than TTL + 2 s, a handover 1 s or more, or something it started is still running.
# Runs unattended (CI, no stdin) in well under a minute once built.
set -euo pipefail

usage() { sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
build=$root/build/release
endpoints=
ttl=5
while (($#)); do
  case $1 in
    --endpoints) endpoints=${2:?--endpoints needs host:port,...}; shift 2 ;;
    --endpoints=*) endpoints=${1#*=}; shift ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --build=*) build=${1#*=}; shift ;;
    --ttl) ttl=${2:?--ttl needs seconds}; shift 2 ;;
    --ttl=*) ttl=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $ttl =~ ^[1-9][0-9]*$ ]] || { echo "demo.sh: --ttl must be a whole number of seconds" >&2; exit 2; }
[[ $build == /* ]] || build=$PWD/$build
exec </dev/null
printf 'election demo: three leader-gated workers (examples/leader_worker.cpp) on etcd\n'

nodes=(node-1 node-2 node-3)
declare -A pid=()
tmp=
etcd_dir=
election=demo-$$-$RANDOM

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
die() {
  printf 'demo.sh: %s\n' "$*" >&2
  exit 1
}
now_us() { echo $((10#${EPOCHREALTIME/./})); }
secs() { # MICROSECONDS -> seconds with 3 decimals
  local us=$1 sign=
  ((us < 0)) && sign=- us=$((-us))
  printf '%s%d.%03d' "$sign" $((us / 1000000)) $(((us % 1000000) / 1000))
}

# A zombie still answers kill -0, so look at the state (as cmake/etcd-fixture.sh does).
alive() {
  local st
  [[ -r /proc/$1/stat ]] || return 1
  read -r _ _ st _ 2>/dev/null </proc/"$1"/stat || return 1
  [[ $st != Z ]]
}

# Processes whose argv names this run's directory or election: what must be gone at the end.
# Only bash builtins read /proc, so the search does not find itself.
leftovers() {
  local f p
  local -a argv
  for f in /proc/[0-9]*/cmdline; do
    p=${f#/proc/}
    p=${p%/cmdline}
    [[ $p == "$$" || $p == "$BASHPID" ]] && continue
    mapfile -d '' -t argv 2>/dev/null <"$f" || continue
    ((${#argv[@]})) || continue
    [[ " ${argv[*]} " == *" $election "* || (-n $tmp && " ${argv[*]}" == *"$tmp"*) ]] && echo "$p"
  done
  return 0
}

# Stops one worker: SIGTERM, then SIGKILL after 3 s; reaps it and sets stopped_code to its exit
# code. (Not in a subshell: only this shell can wait for its children.) The redirection keeps
# bash's "Killed" job notice out of the output.
stopped_code=0
stop_worker() { # NODE
  local p=${pid[$1]:-} i
  stopped_code=0
  [[ -n $p ]] || return 0
  {
    if alive "$p"; then
      kill -TERM "$p" || true
      for ((i = 0; i < 300; i++)); do alive "$p" || break; sleep 0.01; done
      alive "$p" && kill -KILL "$p"
    fi
    wait "$p" || stopped_code=$?
  } 2>/dev/null
  unset "pid[$1]"
}

cleanup() {
  local rc=$? node left
  trap - EXIT INT TERM
  set +e
  for node in "${!pid[@]}"; do stop_worker "$node"; done
  [[ -n $etcd_dir ]] && bash "$root/cmake/etcd-fixture.sh" stop "$etcd_dir"
  if [[ -z $etcd_dir && -n $endpoints ]] && command -v etcdctl >/dev/null; then
    # The counter the workers wrote is the only key left in someone else's cluster.
    ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --dial-timeout=2s --command-timeout=2s \
      del "$election-counter" >/dev/null 2>&1
  fi
  left=$(leftovers)
  [[ -n $tmp && -d $tmp ]] && rm -rf "$tmp"
  ((rc != 0)) && say "demo.sh: failed or stopped (exit $rc); stopped what it had started, removed ${tmp:-nothing}" >&2
  if [[ -n $left ]]; then
    say "demo.sh: still running after clean-up: ${left//$'\n'/ }" >&2
    ((rc == 0)) && rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "demo.sh: interrupted" >&2; exit 130' INT
trap 'say "demo.sh: terminated" >&2; exit 143' TERM

# --- events, read from the workers' --json output -------------------------------------------
# A line still being written is not JSON yet: `fromjson?` skips it instead of failing.
ev() { # NODE JQ-FILTER -> one result a line
  jq -rR "fromjson? | $2" "$tmp/$1.jsonl"
}
# Fast counts for the polling loops (the worker's JSON has no spaces).
count() { # NODE EVENT
  local n
  n=$(grep -c "\"event\":\"$2\"" "$tmp/$1.jsonl" 2>/dev/null) || true
  echo "${n:-0}"
}
accepted_work() { # NODE
  local n
  n=$(grep -c '"event":"work".*"ok":true' "$tmp/$1.jsonl" 2>/dev/null) || true
  echo "${n:-0}"
}
wait_until() { # SECONDS WHAT COMMAND...
  local end=$(($(now_us) + $1 * 1000000)) what=$2
  shift 2
  until "$@" >/dev/null; do
    (($(now_us) < end)) || die "timed out waiting for $what"
    sleep 0.01
  done
}
more_than() { # N COMMAND... : the command prints a number greater than N
  local n=$1
  shift
  (($("$@") > n))
}
leader_among() { # NODE... -> the first of them with an `elected` line
  local node
  for node in "$@"; do
    if (($(count "$node" elected) > 0)); then
      echo "$node"
      return 0
    fi
  done
  return 1
}
others() { # NODE... -> the nodes not named
  local node skip out=()
  for node in "${nodes[@]}"; do
    for skip in "$@"; do [[ $node == "$skip" ]] && continue 2; done
    out+=("$node")
  done
  echo "${out[*]}"
}

# --- dependencies, build, etcd ---------------------------------------------------------------
step "dependencies (scripts/install-deps.sh)"
bash "$root/scripts/install-deps.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/election-demo.XXXXXX")

step "build leader-worker in ${build#"$root"/}"
build_log=$tmp/build.log
started=$SECONDS
if [[ ! -f $build/CMakeCache.txt ]]; then
  say "configuring (RelWithDebInfo, as scripts/test.sh --quick)"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELECTION_SANITIZE=OFF \
    >"$build_log" 2>&1 || { tail -n 30 "$build_log" >&2; die "configure failed"; }
fi
cmake --build "$build" -j 2 --target leader-worker >>"$build_log" 2>&1 ||
  { tail -n 40 "$build_log" >&2; die "build failed"; }
worker=$build/examples/leader-worker
[[ -x $worker ]] || die "no $worker after the build"
say "built $worker ($((SECONDS - started)) s)"

if [[ -z $endpoints ]]; then
  step "etcd: a private single-member etcd on a free loopback port"
  etcd_dir=$tmp/etcd
  bash "$root/cmake/etcd-fixture.sh" start "$etcd_dir" 1 >/dev/null
  endpoints=$(<"$etcd_dir/endpoints")
  say "etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p') on $endpoints," \
    "pid $(<"$etcd_dir/m1.pid"), data in $etcd_dir/m1.data"
else
  step "etcd: the cluster at $endpoints"
fi

step "three workers: ${nodes[*]}"
for node in "${nodes[@]}"; do
  "$worker" --node "$node" --endpoints "$endpoints" --election "$election" --ttl "$ttl" --json \
    >"$tmp/$node.jsonl" 2>"$tmp/$node.err" &
  pid[$node]=$!
  say "$node: pid ${pid[$node]}"
  sleep 0.2 # so the queue has an order worth telling
done
say "each: $worker --node NAME --endpoints $endpoints --election $election --ttl $ttl --json"
say "(each campaigns, works only while it leads, and prints every leader change it observes)"

# --- 1. who leads ----------------------------------------------------------------------------
step "1. who leads"
wait_until 15 "a leader" leader_among "${nodes[@]}"
first=$(leader_among "${nodes[@]}")
read -r waiting_a waiting_b <<<"$(others "$first")"
wait_until 5 "$first to work" more_than 1 accepted_work "$first"
ev "$first" 'select(.event=="elected") |
  "\(.node) leads: key \(.key), fencing revision \(.rev), lease \(.lease) with TTL \(.ttl) s"' | head -n 1
say "$waiting_a and $waiting_b wait in line: their Campaign calls block in etcd, their leases kept alive"
ev "$first" 'select(.event=="work" and .ok) |
  "\(.node) works: counter write seq \(.seq) accepted at revision \(.rev), fenced by revision \(.fence)"'
for node in "${nodes[@]}"; do
  wait_until 5 "$node to observe $first" more_than 0 count "$node" leader
done
say "all three observe the same leader: $(for n in "${nodes[@]}"; do
  ev "$n" 'select(.event=="leader") | .value' | tail -n 1
done | sort -u | paste -sd' ')"

# --- 2. SIGKILL the leader -------------------------------------------------------------------
step "2. SIGKILL the leader, $first (pid ${pid[$first]})"
writes=$(accepted_work "$first")
wait_until 3 "$first to write again" more_than "$writes" accepted_work "$first"
{
  kill -KILL "${pid[$first]}"
  killed_at=$(now_us)
  wait "${pid[$first]}" || true
} 2>/dev/null
unset "pid[$first]"
last_write=$(ev "$first" 'select(.event=="work" and .ok) | .mono_us' | tail -n 1)
say "killed right after its write seq $(ev "$first" 'select(.event=="work" and .ok) | .seq' | tail -n 1):" \
  "it cannot resign, so its key stays until etcd expires its lease"
wait_until $((ttl + 10)) "a new leader" leader_among "$waiting_a" "$waiting_b"
seen_at=$(now_us)
second=$(leader_among "$waiting_a" "$waiting_b")
third=$(others "$first" "$second")
second_elected=$(ev "$second" 'select(.event=="elected") | .mono_us' | head -n 1)
failover_us=$((second_elected - last_write))
failover_seen_us=$((seen_at - killed_at))
ev "$second" 'select(.event=="elected") | "\(.node) elected: key \(.key), fencing revision \(.rev)"' |
  head -n 1
say "failover: $(secs "$failover_us") s from $first's last write to $second's election" \
  "(both from the workers' mono_us, CLOCK_MONOTONIC; the kill came within a few ms of that write)"
say "          $(secs "$failover_seen_us") s from kill -KILL until this script saw it (wall clock, 10 ms polling)"
say "          TTL $ttl s: etcd expires a lease TTL after its last renewal (renewed every TTL/3," \
  "expiry checked every 0.5 s), so a crash costs between 2/3 TTL and TTL + 0.5 s"
((failover_us > 0)) || die "$second was elected before $first's last write"
((failover_us <= (ttl + 2) * 1000000)) || die "failover took longer than TTL + 2 s"

# --- 3. SIGTERM the new leader ----------------------------------------------------------------
step "3. SIGTERM the new leader, $second (pid ${pid[$second]})"
wait_until 5 "$second to work" more_than 1 accepted_work "$second"
term_pid=${pid[$second]}
terminated_at=$(now_us)
kill -TERM "$term_pid"
for ((i = 0; i < 500; i++)); do alive "$term_pid" || break; sleep 0.002; done
exited_at=$(now_us)
term_code=0
wait "$term_pid" 2>/dev/null || term_code=$?
unset "pid[$second]"
wait_until 3 "$third to be elected" leader_among "$third"
ev "$second" 'select(.event=="lost" or .event=="resigned") |
  if .event=="lost" then "\(.node): work stopped, then lost (\(.reason))"
  else "\(.node): resigned: leader key deleted, lease revoked" end'
say "$second exited with code $term_code, $(secs $((exited_at - terminated_at))) s after SIGTERM"
ev "$third" 'select(.event=="elected") | "\(.node) elected: key \(.key), fencing revision \(.rev)"' |
  head -n 1
lost_at=$(ev "$second" 'select(.event=="lost") | .mono_us' | tail -n 1)
third_elected=$(ev "$third" 'select(.event=="elected") | .mono_us' | head -n 1)
handover_us=$((third_elected - lost_at))
say "handover: $(secs "$handover_us") s from $second stopping its work to $third's election (mono_us)"
((term_code == 0)) || die "$second exited with $term_code after SIGTERM"
((exited_at - terminated_at < 1000000)) || die "$second took 1 s or more to exit"
((handover_us < 1000000)) || die "the handover took 1 s or more"

wait_until 5 "$third to work" more_than 0 accepted_work "$third"
step "4. stop the last worker, $third (pid ${pid[$third]})"
stop_worker "$third"
say "$third exited with code $stopped_code"
((stopped_code == 0)) || die "$third exited with $stopped_code after SIGTERM"

# --- summary, from the workers' own output ---------------------------------------------------
step "summary"
for node in "${nodes[@]}"; do
  [[ -s $tmp/$node.err ]] && { say "$node wrote on stderr:"; sed 's/^/  /' "$tmp/$node.err"; }
done
# Each term runs from `elected` to the first of its `lost`/`resigned` and the `deadline_us` that
# `lost` reports; a SIGKILLed leader's term is cut at its last event (it did nothing after that).
# shellcheck disable=SC2016
report=$(for node in "${nodes[@]}"; do cat "$tmp/$node.jsonl"; done | jq -rsR '
  [split("\n")[] | fromjson?] as $all
  | ($all | map(.mono_us) | min) as $t0
  | [$all | group_by(.node)[]
     | reduce .[] as $e ({open: null, terms: [], last: 0, outside: 0};
         .last = $e.mono_us
         | if $e.event == "elected" then
             .open = {node: $e.node, start: $e.mono_us, rev: $e.rev, works: []}
           elif $e.event == "work" and $e.ok then
             (if .open == null then .outside += 1 else .open.works += [$e.mono_us] end)
           elif ($e.event == "lost" or $e.event == "resigned") and .open != null then
             ([$e.mono_us, ($e.deadline_us // $e.mono_us)] | min) as $until
             | .outside += ([.open.works[] | select(. > $until)] | length)
             | .terms += [.open + {end: $until, how: ($e.reason // "resigned")}]
             | .open = null
           else . end)
     | {terms: (.terms + (if .open != null then [.open + {end: .last, how: "SIGKILL"}] else [] end)),
        outside}] as $nodes
  | ($nodes | map(.terms) | add | sort_by(.start)) as $terms
  | ($nodes | map(.outside) | add) as $outside
  | ([range(1; $terms | length) | select($terms[. - 1].end >= $terms[.].start)] | length) as $overlaps
  | ($terms[] | [.node, ((.start - $t0) / 1e6), ((.end - $t0) / 1e6), .rev, (.works | length), .how]
     | "T\t" + (map(tostring) | join("\t"))),
    "O\t\($overlaps)\t\($outside)\t\($terms | length)"')
printf '  %-8s %10s %10s %9s %8s  %s\n' leader "from (s)" "to (s)" "fence" writes "ended by"
while IFS=$'\t' read -r kind a b c d e f; do
  [[ $kind == T ]] && printf '  %-8s %10.3f %10.3f %9s %8s  %s\n' "$a" "$b" "$c" "$d" "$e" "$f"
done <<<"$report"
IFS=$'\t' read -r _ overlaps outside terms < <(grep '^O' <<<"$report")
say "  (seconds from the first event; writes: fenced writes etcd accepted in the term; a SIGKILLed"
say "   leader's term is shown up to its last event: the kill came right after it)"
say "failover after SIGKILL: $(secs "$failover_us") s with a $ttl s TTL;" \
  "handover after SIGTERM: $(secs "$handover_us") s"
say "terms: $terms, overlapping: $overlaps; accepted writes outside a term: $outside"
((terms == 3 && overlaps == 0 && outside == 0)) || die "leadership was not one node at a time"

step "clean-up"
# The EXIT trap stops etcd and anything else still running, and checks that nothing is left.
if [[ -n $etcd_dir ]]; then
  etcd_pid=$(<"$etcd_dir/m1.pid")
  bash "$root/cmake/etcd-fixture.sh" stop "$etcd_dir"
  etcd_dir=
  say "etcd (pid $etcd_pid) stopped"
fi
left=$(leftovers)
[[ -z $left ]] || die "still running: ${left//$'\n'/ }"
say "nothing left running; $tmp is removed on exit"
say "demo passed"
