// election::lease_clock: the clock leadership deadlines are judged on.
#pragma once

#include <chrono>

#include <time.h>

namespace election {

/// A clock that keeps counting while the host or VM is suspended (Linux CLOCK_BOOTTIME).
///
/// etcd expires a lease on its own clock, which runs on while this host sleeps. A deadline kept
/// on std::chrono::steady_clock (CLOCK_MONOTONIC), which stops during a suspend, would let a
/// process that wakes up after a 30 s suspend believe its 10 s lease still runs. Every deadline
/// this library reports (Lease::deadline(), Participant::deadline()) is a lease_clock time.
struct lease_clock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<lease_clock>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept {
    timespec ts{};
#ifdef CLOCK_BOOTTIME
    ::clock_gettime(CLOCK_BOOTTIME, &ts);
#else
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
};

}  // namespace election
