#!/usr/bin/env bash
# The test command: builds election and runs every test, then checks that it installs and can be
# consumed by another CMake project.
#
#   scripts/test.sh           Debug build with ASan+UBSan (LSan on) in build/asan
#   scripts/test.sh --quick   plain RelWithDebInfo build in build/release, for development
#
# Installs missing Debian packages first (scripts/install-deps.sh; needs root or sudo then).
# Uses at most 2 parallel jobs. Exits non-zero on any failure.
set -euo pipefail

usage() { sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

quick=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "test.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
jobs=2
started=$SECONDS
stage_started=$SECONDS

stage() {
  if ((SECONDS > started)); then
    printf '=== (%ds)\n' $((SECONDS - stage_started))
  fi
  stage_started=$SECONDS
  printf '\n=== %s\n' "$*"
}

stage "dependencies (scripts/install-deps.sh)"
bash "$root/scripts/install-deps.sh"

if ((quick)); then
  build=$root/build/release
  cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DELECTION_SANITIZE=OFF)
else
  build=$root/build/asan
  cmake_args=(-DCMAKE_BUILD_TYPE=Debug -DELECTION_SANITIZE=ON)
  # Exported before the build too: catch_discover_tests runs the test programs at build time.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # No LSan suppressions: gRPC 1.51 leaves nothing for LeakSanitizer to report once every
  # channel is destroyed before exit (checked: a channel, a failed callback call, exit).
  # A leak report is therefore about our code, or about a channel we failed to destroy.
fi

stage "configure ${build#"$root"/} (${cmake_args[*]})"
cmake -S "$root" -B "$build" -G Ninja "${cmake_args[@]}"

stage "build ${build#"$root"/} (-j$jobs)"
cmake --build "$build" -j "$jobs"

stage "ctest in ${build#"$root"/}"
(cd "$build" && ctest --output-on-failure --no-tests=error -j "$jobs" --timeout 300)

stage "package checks (tests/package/check.sh)"
ELECTION_JOBS=$jobs bash "$root/tests/package/check.sh" "$root" "$root/build/package"

stage "demo (scripts/demo.sh with the leader-worker just built)"
bash "$root/scripts/demo.sh" --build "$build"

stage "done"
printf 'test.sh: all passed in %dm%02ds\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60))
