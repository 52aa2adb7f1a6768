#!/usr/bin/env bash
# A one-member etcd on 127.0.0.1 with client TLS, mutual TLS or authentication, for the security
# tests. Starting and stopping is etcd-fixture.sh's (free ports, pid files, stop by pid); this
# script adds the certificates and the users.
#
#   etcd-security.sh start DIR MODE [ETCD_FLAG...]   MODE: tls | mtls | auth
#   etcd-security.sh stop DIR
#   etcd-security.sh ctl DIR ETCDCTL_ARG...           etcdctl as root against that etcd
#   etcd-security.sh bounce DIR SECONDS               SIGKILL etcd, start it again SECONDS later
#                                                     (data kept), wait until it is healthy
#
# Files in DIR: certs/ (ca.pem, server.pem, server-key.pem, client.pem, client-key.pem, and
# other-ca.pem, a CA that signed none of them), etcd/ (etcd-fixture.sh's files; etcd/endpoints
# is host:port without a scheme), mode.
#
# MODE auth (plain http) makes these users, then enables authentication:
#   root    password $ETCD_SECURITY_ROOT_PASSWORD (default root-secret)
#   elect   password $ETCD_SECURITY_PASSWORD (default elect-secret), role elect-role with
#           readwrite on the prefix $ETCD_SECURITY_PREFIX (default secure/)
#   nobody  password $ETCD_SECURITY_PASSWORD, no role
# Passwords go to etcdctl on its command line: these are throwaway test users on loopback.
#
# ETCD_FIXTURE_LEASH is passed on to etcd-fixture.sh (see there): the etcd then dies with its
# owner, ETCD_FIXTURE_OWNER, by default this script's caller (not this script, which exits).
set -euo pipefail
export ETCD_FIXTURE_OWNER=${ETCD_FIXTURE_OWNER:-$PPID}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
FIXTURE=$HERE/etcd-fixture.sh
ETCDCTL=${ETCD_FIXTURE_ETCDCTL:-etcdctl}
export ETCDCTL_API=3
ROOT_PASSWORD=${ETCD_SECURITY_ROOT_PASSWORD:-root-secret}
PASSWORD=${ETCD_SECURITY_PASSWORD:-elect-secret}
PREFIX=${ETCD_SECURITY_PREFIX:-secure/}

die() { echo "etcd-security: $*" >&2; exit 1; }

check_dir() {
  [[ -n $1 && $1 != / ]] || die "refusing directory '$1'"
}

# The server certificate is also a client one: etcd's own gRPC gateway dials etcd with it.
# Short-lived EC keys: quick to make, and both etcd (Go) and gRPC (OpenSSL) take P-256.
make_certs() { # DIR
  local d=$1
  mkdir -p "$d"
  local -a key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${key[@]}" -keyout "$d/ca-key.pem" -out "$d/ca.pem" -days 2 \
    -subj "/CN=election test CA" 2>/dev/null
  openssl req -x509 "${key[@]}" -keyout "$d/other-ca-key.pem" -out "$d/other-ca.pem" -days 2 \
    -subj "/CN=election test other CA" 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1" "extendedKeyUsage=serverAuth,clientAuth" \
    "basicConstraints=CA:FALSE" >"$d/server.ext"
  printf '%s\n' "extendedKeyUsage=clientAuth" "basicConstraints=CA:FALSE" >"$d/client.ext"
  local who
  for who in server client; do
    openssl req "${key[@]}" -keyout "$d/$who-key.pem" -out "$d/$who.csr" \
      -subj "/CN=election test $who" 2>/dev/null
    openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" \
      -CAcreateserial -days 2 -extfile "$d/$who.ext" -out "$d/$who.pem" 2>/dev/null
  done
  chmod 600 "$d"/*-key.pem
}

# etcdctl flags for DIR's etcd: TLS as etcd-fixture.sh recorded it, root once auth is on.
ctl() { # DIR ARGS...
  local dir=$1 mode
  shift
  mode=$(<"$dir/mode")
  local -a flags=(--endpoints="$(<"$dir/etcd/endpoints")" --dial-timeout=2s --command-timeout=5s)
  [[ -f $dir/etcd/etcdctl.args ]] && mapfile -t -O ${#flags[@]} flags <"$dir/etcd/etcdctl.args"
  [[ $mode == auth && -f $dir/auth-enabled ]] && flags+=(--user="root:$ROOT_PASSWORD")
  "$ETCDCTL" "${flags[@]}" "$@"
}

setup_auth() { # DIR
  local dir=$1
  # Called from an `if`, where set -e does not apply: each step checks itself.
  ctl "$dir" user add "root:$ROOT_PASSWORD" >/dev/null || return 1
  ctl "$dir" role add root >/dev/null || return 1
  ctl "$dir" user grant-role root root >/dev/null || return 1
  ctl "$dir" user add "elect:$PASSWORD" >/dev/null || return 1
  ctl "$dir" user add "nobody:$PASSWORD" >/dev/null || return 1
  ctl "$dir" role add elect-role >/dev/null || return 1
  ctl "$dir" role grant-permission elect-role --prefix=true readwrite "$PREFIX" >/dev/null ||
    return 1
  ctl "$dir" user grant-role elect elect-role >/dev/null || return 1
  ctl "$dir" auth enable >/dev/null || return 1
  touch "$dir/auth-enabled"
}

cmd_start() { # DIR MODE FLAGS...
  local dir=$1 mode=$2
  shift 2
  check_dir "$dir"
  [[ -d $dir/etcd ]] && bash "$FIXTURE" stop "$dir/etcd"
  rm -rf "$dir"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  echo "$mode" >"$dir/mode"
  case $mode in
    tls | mtls)
      command -v openssl >/dev/null || die "openssl not found (Debian package openssl)"
      make_certs "$dir/certs"
      ETCD_FIXTURE_TLS_DIR=$dir/certs ETCD_FIXTURE_CLIENT_CERT_AUTH=$([[ $mode == mtls ]] && echo 1 || echo 0) \
        ETCD_FIXTURE_EXTRA_ARGS="$*" bash "$FIXTURE" start "$dir/etcd" 1 >/dev/null
      ;;
    auth)
      ETCD_FIXTURE_EXTRA_ARGS="$*" bash "$FIXTURE" start "$dir/etcd" 1 >/dev/null
      if ! setup_auth "$dir"; then
        bash "$FIXTURE" stop "$dir/etcd"
        die "could not set up users and roles in $dir"
      fi
      ;;
    *) die "unknown mode '$mode' (tls, mtls or auth)" ;;
  esac
  cat "$dir/etcd/endpoints"
}

cmd_stop() {
  check_dir "$1"
  [[ -d $1/etcd ]] || return 0
  bash "$FIXTURE" stop "$1/etcd"
}

cmd_bounce() { # DIR SECONDS
  check_dir "$1"
  bash "$FIXTURE" kill-member "$1/etcd" 1
  sleep "$2"
  # etcdctl's health check needs a user once authentication is on (etcdctl takes ETCDCTL_USER).
  if [[ -f $1/auth-enabled ]]; then
    ETCDCTL_USER="root:$ROOT_PASSWORD" bash "$FIXTURE" start-member "$1/etcd" 1
  else
    bash "$FIXTURE" start-member "$1/etcd" 1
  fi
}

case ${1:-} in
  start) (($# >= 3)) || die "usage: $0 start DIR MODE [ETCD_FLAG...]"; cmd_start "$2" "$3" "${@:4}" ;;
  stop) (($# == 2)) || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  bounce) (($# == 3)) || die "usage: $0 bounce DIR SECONDS"; cmd_bounce "$2" "$3" ;;
  ctl) (($# >= 3)) || die "usage: $0 ctl DIR ETCDCTL_ARG..."; ctl "$2" "${@:3}" ;;
  *) die "usage: $0 {start DIR MODE [ETCD_FLAG...]|stop DIR|ctl DIR ETCDCTL_ARG...|bounce DIR SECONDS}" ;;
esac
