// The definitions of events.hpp: the two forms of a line (readable, JSON) and the wall clock the
// readable one starts with, and the time helpers.
#include "events.hpp"

#include "common/json_line.hpp"

#include <ctime>
#include <utility>

namespace leader_worker {

std::int64_t micros(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

Clock::time_point on_monotonic(election::lease_clock::time_point t) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(t - election::lease_clock::now());
}

void Events::emit(std::string_view event, const Fields& fields, std::string_view text) {
  const auto now = Clock::now();
  std::string line;
  if (json_) {
    Fields all{{"event", event}, {"node", node_}, {"mono_us", micros(now)}};
    all.insert(fields.begin(), fields.end());
    line = example_common::json_line(std::move(all));
  } else {
    line = wall_clock() + "  " + node_ + "  " + one_line(std::string(text));
  }
  line += '\n';
  write(stdout, line);
}

void Events::error(const std::string& message) {
  emit("error", {{"message", one_line(message)}}, "error: " + message);
}

void Events::fatal(const std::string& message) {
  if (json_) error(message);
  write(stderr, "leader-worker: " + one_line(message) + "\n");
}

void Events::write(std::FILE* to, const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), to);
  std::fflush(to);
}

std::string Events::wall_clock() {
  const auto now = std::chrono::system_clock::now();
  const auto seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm local{};
  ::localtime_r(&seconds, &local);
  char out[32];
  std::snprintf(out, sizeof out, "%02d:%02d:%02d.%03d", local.tm_hour, local.tm_min, local.tm_sec,
                static_cast<int>(millis));
  return out;
}

}  // namespace leader_worker
