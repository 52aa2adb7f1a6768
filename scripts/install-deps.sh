#!/usr/bin/env bash
# Installs the Debian 12 packages needed to build, test and package election.
#
#   scripts/install-deps.sh
#
# Runs apt-get as root, or through sudo when not root. When every package is already installed
# (asked of dpkg-query, no network) it returns at once, so calling it before every test run costs
# nothing.
set -euo pipefail

PACKAGES=(
  # toolchain and build
  g++ cmake ninja-build pkg-config git ca-certificates
  # libraries (libboost1.81-dev, not libboost-dev: that one is Boost 1.74)
  libboost1.81-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libcli11-dev catch2
  # leader-worker's --json lines and the tests that read them (Boost.JSON is a compiled library;
  # Beast, for --metrics, is header-only and comes with libboost1.81-dev)
  libboost-json1.81-dev
  # the etcd the tests start, and what cmake/etcd-fixture.sh uses beside it (ss, ps)
  etcd-server etcd-client iproute2 procps
  # the TLS tests make their certificates at test time
  openssl
  # scripts/demo.sh reads the workers' JSON lines with jq
  jq
  # election::prometheus and leader-worker --metrics; the Prometheus server and promtool the
  # metrics test scrapes them with
  prometheus-cpp-dev prometheus
)

log() { printf 'install-deps: %s\n' "$*"; }

command -v dpkg-query >/dev/null || { log "dpkg-query not found: this script is for Debian 12" >&2; exit 1; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ $status == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  log "all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
log "missing: ${missing[*]}"

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  log "not root and no sudo: install these by hand: ${missing[*]}" >&2
  exit 1
fi

# A mirror that hiccups once should not fail a CI run: a few tries, a short pause between.
retry() {
  local attempt
  for attempt in 1 2 3; do
    "$@" && return 0
    log "attempt $attempt failed: $*" >&2
    ((attempt < 3)) && sleep $((attempt * 10))
  done
  return 1
}

log "apt-get update"
retry "${as_root[@]}" apt-get update
log "apt-get install ${missing[*]}"
retry "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
log "done"
