// What a Client and a Leadership have counted: plain snapshots, no metrics library needed.
// election/prometheus.hpp (the optional election::prometheus target) exports them.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <string>

namespace election {

/// Counts of observations by upper bound, as a Prometheus histogram has them: bucket i counts
/// the observations <= bounds[i] (cumulative), the last one everything.
struct Histogram {
  /// Upper bounds in seconds: 1 ms to 10 s, then +Inf.
  static constexpr std::array<double, 14> bounds{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,  0.5,    1.0,   2.5,  5.0,   10.0, std::numeric_limits<double>::infinity()};
  std::array<std::uint64_t, bounds.size()> buckets{};  ///< cumulative
  std::uint64_t count = 0;
  double sum = 0;  ///< seconds
};

/// A Client's background work: the keep-alive and the watch streams every lease and election of
/// it shares. Thread-safe to take (Client::metrics()).
struct ClientMetrics {
  std::uint64_t renewals_sent = 0;
  std::uint64_t renewals_answered = 0;
  std::uint64_t renewals_late = 0;       ///< answered after the round-trip timeout, still counted
  Histogram renewal_seconds;             ///< round trip of each answered renewal
  std::uint64_t keep_alive_streams = 0;  ///< opened (the first, and every one after)
  std::uint64_t keep_alive_hedges = 0;   ///< opened beside a stuck one
  std::uint64_t watch_streams = 0;       ///< opened
  std::uint64_t watch_stalls = 0;        ///< given up on for silence
  std::uint64_t leases = 0;              ///< kept alive now
  std::uint64_t watches = 0;             ///< elections (and others) watched now
  /// Background work that failed with an exception nothing expected (ClientEvent::internal_error).
  std::uint64_t internal_errors = 0;
};

/// One Leadership's life so far. Thread-safe to take (Leadership::metrics()).
struct LeadershipMetrics {
  bool is_leader = false;
  std::uint64_t terms_won = 0;
  /// Ends of leadership by reason_name() ("resigned", "lease-expired", "key-deleted",
  /// "deadline-passed", "work-finished", "work-failed", "client-closed", "shutdown", ...).
  std::map<std::string, std::uint64_t> ends_by_reason;
  /// Terms whose work was still running when etcd could let another candidate in.
  std::uint64_t work_overruns = 0;
  std::uint64_t retried_errors = 0;   ///< failed campaigns, each followed by a pause
  std::uint64_t observer_events = 0;  ///< leadership changes seen
  /// Time spent campaigning (granting a lease, waiting in line), all campaigns together.
  std::chrono::nanoseconds time_in_line{0};
  /// While leading: since the send time of the last renewal of the leadership's lease that
  /// etcd answered (a renewal answered counts from when it was sent). 0 when not leading.
  std::chrono::nanoseconds since_renewal{0};
};

}  // namespace election
