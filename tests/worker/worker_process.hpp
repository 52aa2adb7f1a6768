// leader-worker as a separate process, for the tests that run it: its arguments against the
// fixture, its output as events.
#pragma once

#include "support/etcd_cluster.hpp"
#include "support/process.hpp"
#include "worker/json_lines.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#ifndef ELECTION_LEADER_WORKER
#error "ELECTION_LEADER_WORKER must name the leader-worker program"
#endif

namespace worker_test {

using namespace std::chrono_literals;
using election::test::ChildProcess;
using election::test::WorkerEvent;
using Clock = std::chrono::steady_clock;

// The TTL the workers ask for: short, so the SIGKILL failover is quick.
constexpr std::int64_t ttl_s = 3;

inline std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

inline double seconds(std::int64_t us) { return static_cast<double>(us) / 1e6; }

inline std::filesystem::path work_dir(const std::string& name) {
  auto dir =
      std::filesystem::path(ELECTION_TEST_WORK_DIR) / (name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::string read_text(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline std::string fixture_endpoint_list() {
  std::string out;
  for (const auto& e : election::test::fixture_endpoints()) out += (out.empty() ? "" : ",") + e;
  return out;
}

/// Polls `ready` every 20 ms until it holds or `limit` passes; returns its last value.
inline bool poll(const std::function<bool()>& ready, std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  while (!ready()) {
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

class Worker {
 public:
  Worker(std::string node, const std::vector<std::string>& args, const std::filesystem::path& dir)
      : node_(std::move(node)), out_(dir / (node_ + ".jsonl")), process_(argv(args), out_) {}

  const std::string& node() const { return node_; }
  ChildProcess& process() { return process_; }
  const ChildProcess& process() const { return process_; }
  std::vector<WorkerEvent> events() const {
    return election::test::parse_worker_events(process_.output());
  }
  std::string stderr_text() const { return read_text(out_.string() + ".err"); }

  /// The events named `name`, optionally only those that satisfy `also`.
  std::vector<WorkerEvent> events(const std::string& name,
                                  const std::function<bool(const WorkerEvent&)>& also = {}) const {
    std::vector<WorkerEvent> out;
    for (auto& e : events())
      if (e.event() == name && (!also || also(e))) out.push_back(e);
    return out;
  }

 private:
  static std::vector<std::string> argv(const std::vector<std::string>& args) {
    std::vector<std::string> out{ELECTION_LEADER_WORKER};
    out.insert(out.end(), args.begin(), args.end());
    return out;
  }

  std::string node_;
  std::filesystem::path out_;
  ChildProcess process_;
};

inline std::vector<std::string> worker_args(const std::string& node,
                                            const std::string& election_name) {
  return {"--node",     node,          "--endpoints", fixture_endpoint_list(),
          "--election", election_name, "--ttl",       std::to_string(ttl_s),
          "--json"};
}

}  // namespace worker_test
