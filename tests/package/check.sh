#!/usr/bin/env bash
# Checks that election can be used by another CMake project, both ways a user would:
#
#   tests/package/check.sh SRC_DIR WORK_DIR
#
# 1. a fresh Release build of SRC_DIR, installed with `cmake --install` into WORK_DIR/prefix;
#    the consumer in tests/package finds it with find_package(election) and is built and run;
# 2. the same consumer with USE_SUBDIRECTORY=ON, building SRC_DIR through add_subdirectory.
#
# WORK_DIR is emptied first. The consumer program needs no etcd (see main.cpp).
# Builds use at most ELECTION_JOBS jobs (default 2).
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 SRC_DIR WORK_DIR" >&2
  exit 2
fi
src=$(cd "$1" && pwd -P)
mkdir -p "$2"
work=$(cd "$2" && pwd -P)
jobs=${ELECTION_JOBS:-2}
consumer=$src/tests/package

[[ -f $src/CMakeLists.txt && -f $consumer/CMakeLists.txt ]] || {
  echo "check.sh: $src is not election's source tree" >&2
  exit 2
}
case $work in
  / | "$src") echo "check.sh: refusing WORK_DIR '$work'" >&2; exit 2 ;;
esac

step() { printf '\n--- package check: %s\n' "$*"; }

# Fresh every time: a stale prefix or cache could hide a missing install rule.
rm -rf "${work:?}"/{lib-build,prefix,find-package,subdirectory}

step "Release build of the library alone (no tests, no examples)"
cmake -S "$src" -B "$work/lib-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DELECTION_BUILD_TESTS=OFF -DELECTION_BUILD_EXAMPLES=OFF
cmake --build "$work/lib-build" -j "$jobs"

step "install into $work/prefix"
cmake --install "$work/lib-build" --prefix "$work/prefix"
# The generated etcd/*.pb.h are private to the library: a consumer must not need them.
if find "$work/prefix" -name '*.pb.h' -o -name '*.proto' | grep -q .; then
  echo "check.sh: the install contains generated protobuf headers or .proto files:" >&2
  find "$work/prefix" -name '*.pb.h' -o -name '*.proto' >&2
  exit 1
fi
find "$work/prefix" -type f | sed "s|^$work/prefix/|  |" | sort

step "consumer with find_package(election)"
cmake -S "$consumer" -B "$work/find-package" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix"
cmake --build "$work/find-package" -j "$jobs"
timeout 60 "$work/find-package/app"
# election::prometheus comes with the package when prometheus-cpp was found at its build.
if [[ -f $work/prefix/include/election/prometheus.hpp ]]; then
  [[ -x $work/find-package/app-prometheus ]] || {
    echo "check.sh: election::prometheus was installed but the consumer did not find it" >&2
    exit 1
  }
  timeout 60 "$work/find-package/app-prometheus"
fi

step "consumer with add_subdirectory(${src})"
cmake -S "$consumer" -B "$work/subdirectory" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DUSE_SUBDIRECTORY=ON -DELECTION_SOURCE_DIR="$src"
cmake --build "$work/subdirectory" -j "$jobs"
timeout 60 "$work/subdirectory/app"
if [[ -x $work/subdirectory/app-prometheus ]]; then timeout 60 "$work/subdirectory/app-prometheus"; fi

step "passed"
