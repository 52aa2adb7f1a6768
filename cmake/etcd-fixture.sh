#!/usr/bin/env bash
# Private etcd servers on 127.0.0.1 for tests (CTest fixtures and test programs).
#
#   etcd-fixture.sh start DIR [MEMBERS]     fresh cluster in DIR (MEMBERS defaults to 1)
#   etcd-fixture.sh stop DIR                stop every member; fine if nothing runs
#   etcd-fixture.sh kill-member DIR N       SIGKILL member N (1-based)
#   etcd-fixture.sh start-member DIR N      start member N again from DIR/mN.cmd
#   etcd-fixture.sh restart-member DIR N    stop + start member N, data kept
#
# Files in DIR: mN.pid, mN.endpoint (127.0.0.1:C), mN.peer (http://127.0.0.1:P),
# mN.cmd (argv, one per line), mN.log, mN.data/, endpoints (C1,C2,... no scheme).
# "Healthy" means `etcdctl endpoint health`, a quorum read: a member started
# while the cluster has no quorum never becomes healthy.
#
# Client TLS (cmake/etcd-security.sh sets these; plain http when unset), read by `start`:
#   ETCD_FIXTURE_TLS_DIR=CERTS        serve https with CERTS/{server.pem,server-key.pem}
#   ETCD_FIXTURE_CLIENT_CERT_AUTH=1   also require a client certificate signed by CERTS/ca.pem
#                                     (mutual TLS; etcd implies it from --trusted-ca-file)
#   ETCD_FIXTURE_EXTRA_ARGS="..."     more etcd flags, split on blanks (e.g. --auth-token-ttl 2)
# The etcdctl flags that reach such members are kept in DIR/etcdctl.args, one per line.
#
# Members that die with their owner (the tests set these; unset or empty: members run until
# stopped, as for scripts/demo.sh and the benchmarks), read by start, start-member, restart-member:
#   ETCD_FIXTURE_LEASH=PATH     run each member under PATH, tests/support/etcd_leash.cpp: it is
#                               SIGKILLed as soon as the owner exits, however (abort, SIGKILL).
#                               mN.pid is still etcd's own pid, stop and kill-member are unchanged.
#   ETCD_FIXTURE_OWNER=PID      the owner; default $PPID, the program that runs this script
set -euo pipefail

ETCD=${ETCD_FIXTURE_ETCD:-etcd}
ETCDCTL=${ETCD_FIXTURE_ETCDCTL:-etcdctl}
export ETCDCTL_API=3

die() { echo "etcd-fixture: $*" >&2; exit 1; }

LEASH=${ETCD_FIXTURE_LEASH:-}
OWNER=${ETCD_FIXTURE_OWNER:-$PPID}

# Before starting anything (stop never needs the leash).
check_leash() {
  [[ -z $LEASH ]] && return 0
  [[ -x $LEASH ]] || die "ETCD_FIXTURE_LEASH=$LEASH is not an executable (build etcd-leash)"
  [[ $OWNER =~ ^[1-9][0-9]*$ ]] || die "bad owner pid '$OWNER' (ETCD_FIXTURE_OWNER)"
}

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# A zombie still answers kill -0, so look at the state: the orphaned etcd is
# reaped by PID 1, which on some machines does so only after a delay.
alive() {
  local st
  [[ -r /proc/$1/stat ]] || return 1
  read -r _ _ st _ 2>/dev/null </proc/"$1"/stat || return 1
  [[ $st != Z ]]
}

# The pid in a pid file may have been reused: only accept our own etcd, i.e. an
# `etcd` whose argv names this member's data dir.
is_our_etcd() { # PID DATADIR
  local -a argv
  alive "$1" || return 1
  mapfile -d '' -t argv 2>/dev/null </proc/"$1"/cmdline || return 1
  ((${#argv[@]} > 0)) && [[ ${argv[0]##*/} == etcd ]] || return 1
  local a
  for a in "${argv[@]}"; do [[ $a == "$2" ]] && return 0; done
  return 1
}

stop_member() { # DIR N [SIGNAL]
  local dir=$1 n=$2 sig=${3:-TERM} pidf=$1/m$2.pid pid
  [[ -f $pidf ]] || return 0
  pid=$(<"$pidf")
  if [[ $pid =~ ^[0-9]+$ ]] && is_our_etcd "$pid" "$dir/m$n.data"; then
    kill -CONT "$pid" 2>/dev/null || true # a stopped process acts on TERM only once continued
    kill -"$sig" "$pid" 2>/dev/null || true
    local deadline=$(($(now_ms) + 5000))
    while alive "$pid" && (($(now_ms) < deadline)); do sleep 0.05; done
    if alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      # wait until the kernel has released the ports, so a restart can bind them
      deadline=$(($(now_ms) + 2000))
      while alive "$pid" && (($(now_ms) < deadline)); do sleep 0.02; done
    fi
  fi
  rm -f "$pidf"
}

stop_all() {
  local f n
  for f in "$1"/m*.pid; do
    [[ -e $f ]] || continue
    n=${f##*/m}
    stop_member "$1" "${n%.pid}"
  done
}

launch_member() { # DIR N
  local -a cmd
  mapfile -t cmd <"$1/m$2.cmd"
  if [[ -n $LEASH ]]; then
    # The leash returns once etcd runs (in a session of its own) and mN.pid holds etcd's pid;
    # it fails, starting nothing, if the owner is gone.
    rm -f "$1/m$2.pid"
    "$LEASH" --owner "$OWNER" --pid-file "$1/m$2.pid" -- "${cmd[@]}" </dev/null >>"$1/m$2.log" 2>&1
    return
  fi
  # Not a process-group leader here, so setsid execs without forking: $! is etcd.
  setsid "${cmd[@]}" </dev/null >>"$1/m$2.log" 2>&1 &
  echo $! >"$1/m$2.pid"
}

# Succeeds once every endpoint is healthy; fails early if one of PIDS dies.
wait_healthy() { # DIR ENDPOINTS PIDS...
  local eps=$2 p
  local -a tls=()
  [[ -f $1/etcdctl.args ]] && mapfile -t tls <"$1/etcdctl.args"
  shift 2
  local deadline=$(($(now_ms) + 20000))
  while (($(now_ms) < deadline)); do
    for p in "$@"; do alive "$p" || return 1; done
    "$ETCDCTL" --endpoints="$eps" "${tls[@]}" --dial-timeout=1s --command-timeout=1s \
      endpoint health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# Ports in use right now (any state, since a connected socket also blocks bind).
# Without ss (iproute2) collisions are left to the start retries.
used_ports() {
  command -v ss >/dev/null || return 0
  ss -Htan | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u
}

# Below the kernel's ephemeral range: a port from inside it can be taken, while a killed member
# is down, as the source port of any outgoing connection, and the member cannot restart.
pick_ports() { # COUNT -> prints COUNT distinct free ports
  local used picked=" " p low=10000 high=32767 ephemeral
  read -r ephemeral _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || ephemeral=32768
  ((ephemeral - 1 - low >= 5000)) && high=$((ephemeral - 1))
  used=" $(used_ports | tr '\n' ' ') "
  while (($(wc -w <<<"$picked") < $1)); do
    p=$((low + RANDOM % (high - low + 1)))
    [[ $used == *" $p "* || $picked == *" $p "* ]] && continue
    picked+="$p "
  done
  echo "$picked"
}

check_dir() {
  [[ -n $1 && $1 != / ]] || die "refusing directory '$1'"
}

abs_dir() { # absolute path, as it appears in etcd's argv
  [[ -d $1 ]] && (cd "$1" && pwd -P)
}

try_start() { # DIR MEMBERS
  local dir=$1 members=$2 i
  local -a ports pids
  read -r -a ports <<<"$(pick_ports $((2 * members)))"
  local cluster="" eps="" token scheme=http
  local -a security=() extra=()
  token="fixture-$(printf '%s' "$dir" | md5sum | cut -c1-12)-$$-$RANDOM"
  if [[ -n ${ETCD_FIXTURE_TLS_DIR:-} ]]; then
    local certs
    certs=$(abs_dir "$ETCD_FIXTURE_TLS_DIR") || die "no TLS directory '$ETCD_FIXTURE_TLS_DIR'"
    scheme=https
    security=(--cert-file "$certs/server.pem" --key-file "$certs/server-key.pem")
    local -a ctl=(--cacert="$certs/ca.pem")
    if [[ ${ETCD_FIXTURE_CLIENT_CERT_AUTH:-0} == 1 ]]; then
      security+=(--trusted-ca-file "$certs/ca.pem" --client-cert-auth)
      ctl+=(--cert="$certs/client.pem" --key="$certs/client-key.pem")
    fi
    printf '%s\n' "${ctl[@]}" >"$dir/etcdctl.args"
  fi
  read -r -a extra <<<"${ETCD_FIXTURE_EXTRA_ARGS:-}"
  for ((i = 1; i <= members; i++)); do
    cluster+="${cluster:+,}m$i=http://127.0.0.1:${ports[2 * i - 1]}"
    eps+="${eps:+,}127.0.0.1:${ports[2 * i - 2]}"
  done
  for ((i = 1; i <= members; i++)); do
    local c=${ports[2 * i - 2]} p=${ports[2 * i - 1]}
    echo "127.0.0.1:$c" >"$dir/m$i.endpoint"
    echo "http://127.0.0.1:$p" >"$dir/m$i.peer"
    printf '%s\n' "$(command -v "$ETCD")" --name "m$i" --data-dir "$dir/m$i.data" \
      --listen-client-urls "$scheme://127.0.0.1:$c" --advertise-client-urls "$scheme://127.0.0.1:$c" \
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$token" \
      --logger zap "${security[@]}" "${extra[@]}" >"$dir/m$i.cmd"
    launch_member "$dir" "$i" || return 1
    pids+=("$(<"$dir/m$i.pid")")
  done
  echo "$eps" >"$dir/endpoints"
  wait_healthy "$dir" "$eps" "${pids[@]}"
}

cmd_start() {
  local dir=$1 members=${2:-1} attempt
  check_dir "$dir"
  [[ $members =~ ^[1-9][0-9]*$ ]] || die "bad member count '$members'"
  command -v "$ETCD" >/dev/null || die "etcd not found"
  check_leash
  if [[ -d $dir ]]; then stop_all "$(abs_dir "$dir")"; fi # leftovers of an interrupted run
  for attempt in 1 2 3; do
    rm -rf "$dir"
    mkdir -p "$dir"
    dir=$(abs_dir "$dir")
    if try_start "$dir" "$members"; then
      cat "$dir/endpoints"
      return 0
    fi
    echo "etcd-fixture: attempt $attempt to start $members member(s) in $dir failed" >&2
    stop_all "$dir"
  done
  tail -n 25 "$dir"/m*.log >&2 || true
  exit 1
}

cmd_stop() {
  check_dir "$1"
  [[ -d $1 ]] || return 0
  stop_all "$(abs_dir "$1")"
}

member_dir() { # DIR N -> absolute DIR, after checking member N exists
  check_dir "$1"
  [[ $2 =~ ^[1-9][0-9]*$ ]] || die "bad member number '$2'"
  [[ -f $1/m$2.cmd ]] || die "no member $2 in $1"
  abs_dir "$1"
}

cmd_start_member() {
  local dir pid
  dir=$(member_dir "$1" "$2")
  if [[ -f $dir/m$2.pid ]] && is_our_etcd "$(<"$dir/m$2.pid")" "$dir/m$2.data"; then
    : # already running: just wait for it below
  elif ! launch_member "$dir" "$2"; then
    echo "etcd-fixture: member $2 in $dir did not start" >&2
    tail -n 25 "$dir/m$2.log" >&2 || true
    exit 1
  fi
  pid=$(<"$dir/m$2.pid")
  if ! wait_healthy "$dir" "$(<"$dir/m$2.endpoint")" "$pid"; then
    echo "etcd-fixture: member $2 in $dir did not become healthy" >&2
    tail -n 25 "$dir/m$2.log" >&2 || true
    exit 1
  fi
}

case ${1:-} in
  start) (($# == 2 || $# == 3)) || die "usage: $0 start DIR [MEMBERS]"; cmd_start "$2" "${3:-1}" ;;
  stop) (($# == 2)) || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  kill-member | start-member | restart-member)
    (($# == 3)) || die "usage: $0 $1 DIR N"
    dir=$(member_dir "$2" "$3")
    [[ $1 == kill-member ]] || check_leash
    case $1 in
      kill-member) stop_member "$dir" "$3" KILL ;;
      start-member) cmd_start_member "$dir" "$3" ;;
      restart-member) stop_member "$dir" "$3" && cmd_start_member "$dir" "$3" ;;
    esac
    ;;
  *) die "usage: $0 {start DIR [MEMBERS]|stop DIR|kill-member DIR N|start-member DIR N|restart-member DIR N}" ;;
esac
