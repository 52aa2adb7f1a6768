// What leader-worker prints, and the small helpers its lines are made with. Events writes each
// event as one readable line (wall clock, node, text) or, with --json, as one JSON object
// (event, node, mono_us, then the event's fields); every line is written whole and flushed at
// once. The helpers: micros() and on_monotonic() put times on CLOCK_MONOTONIC, the clock of
// every time printed; one_line(), strip_tag() and describe() (common/text.hpp) make a message fit
// on one line meant for people. Definitions in events.cpp.
#pragma once

#include "common/text.hpp"

#include <election/clock.hpp>

#include <boost/json/object.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace leader_worker {

using Fields = boost::json::object;
using Clock = std::chrono::steady_clock;

/// `t` in microseconds since Clock's epoch: the mono_us of the JSON lines.
std::int64_t micros(Clock::time_point t);

/// A lease deadline (lease_clock: boot time, which counts suspended time) on CLOCK_MONOTONIC,
/// the clock of every other time this program prints. The two differ by the time suspended.
Clock::time_point on_monotonic(election::lease_clock::time_point t);

// one_line(), strip_tag(), describe(): common/text.hpp, shared with lock-exec.
using example_common::describe;
using example_common::one_line;
using example_common::strip_tag;

// What the worker prints. Each line is written whole and flushed at once: the output is read
// while the process runs, and a SIGKILL must not lose what was already said.
class Events {
 public:
  Events(std::string node, bool json) : node_(std::move(node)), json_(json) {}

  /// `fields` follow event, node and mono_us in the JSON line; `text` is the readable line.
  void emit(std::string_view event, const Fields& fields, std::string_view text);

  void error(const std::string& message);

  /// The one line on stderr for a failure that ends the process (and an `error` event for a
  /// reader of the JSON lines).
  void fatal(const std::string& message);

 private:
  static void write(std::FILE* to, const std::string& line);
  static std::string wall_clock();

  std::string node_;
  bool json_;
};

}  // namespace leader_worker
