// What a chaos run leaves for people: a one-screen text summary and a timeline SVG (who led
// when, per worker slot, with the faults marked on the rows they hit).
#pragma once

#include "checker.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace chaos {

/// One injected fault. `row` is the timeline row it hits: "w3" (a worker slot), "m2" (an etcd
/// member) or "etcd" (every member).
struct Fault {
  std::string kind;
  std::string target;
  std::string row;
  std::int64_t from_us = 0;
  std::int64_t to_us = 0;
  /// A fault that also SIGKILLs the leader worker in its midst (freeze-watch): when, that
  /// worker's row, and the node next in line then, the one expected to lead after it. The
  /// summary measures the kill to the next `elected`. 0 and empty for the other kinds.
  std::int64_t killed_us = 0;
  std::string killed_row;
  std::string next_in_line;
};

struct RunInfo {
  std::uint64_t seed = 0;
  int duration_s = 0;
  int workers = 0;
  int members = 0;
  std::int64_t ttl_s = 0;
  std::int64_t takeover_delay_ms = 0;
  bool takeover_delay_chosen = false;  // by the workers, from etcd's version
  int lock_writes = 0;                 // lock mode (--lock N): N writes a hold; 0: an election
  /// The range the workers' stop latencies were drawn from (leader-worker --stop-latency, one
  /// per worker process, from the seed); both 0: off.
  int stop_latency_min_ms = 0;
  int stop_latency_max_ms = 0;
  std::int64_t start_us = 0;  ///< time zero of the timeline
  std::int64_t end_us = 0;
  std::string command;
  /// Lines for the summary about faults the runner meant to inject and did not (and why).
  std::vector<std::string> notes;
};

std::string summary(const RunInfo& run, const std::vector<Fault>& faults, const CheckInput& input,
                    const CheckResult& result);

std::string timeline_svg(const RunInfo& run, const std::vector<Fault>& faults,
                         const CheckInput& input, const CheckResult& result);

}  // namespace chaos
