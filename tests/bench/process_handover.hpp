// A handover between two processes of one program, timed from the signal that makes the holder
// let go until the successor's line (handover.cpp, lock.cpp).
#pragma once

#include "api/access.hpp"
#include "common.hpp"

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace election::bench {

// Two processes of one program in one election handing over by a signal, as a user compares
// binaries: from the signal to the leader until the successor's "leading" line arrives on its
// pipe, with the next successor spawned and in line (200 ms) before each round.
//
// The programs: `etcdctl elect` and leader-worker (handover.cpp), `etcdctl lock` (lock.cpp).
class ProcessHandover {
 public:
  struct Program {
    std::string what;  // for messages
    std::function<std::vector<std::string>(const std::string& name, const std::string& value)> argv;
    std::function<bool(const std::string& line)> leads;  // the line that says it leads
    int stop_signal;
    std::string err_file;
  };

  ProcessHandover(const Config& config, IoThread& io, Client& probe, Program program)
      : config_(config),
        io_(io),
        probe_(probe),
        program_(std::move(program)),
        name_(unique("handover-process")) {}

  void setup() {
    leader_ = spawn(0);
    if (!leader_->wait_line(program_.leads, 15s))
      throw std::runtime_error(program_.what + " did not lead: " + leader_->stderr_tail());
  }

  // Milliseconds from the signal to the successor's line.
  double round(int r) {
    auto waiter = spawn(r + 1);
    io_.sync(wait_count(*election::detail::access::core(probe_), name_ + "/", 2, 10s), 15s,
             "the next process in line");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // in line, its watch current
    const auto t0 = now_us();
    leader_->signal(program_.stop_signal);
    auto line = waiter->wait_line(program_.leads, 10s);
    if (!line)
      throw std::runtime_error(program_.what + " successor did not lead: " + waiter->stderr_tail());
    leader_->stop(5s);
    leader_ = std::move(waiter);
    return ms(line->at_us - t0);
  }

  void teardown() {
    if (leader_) {
      leader_->signal(program_.stop_signal);
      leader_->stop(5s);
    }
  }

 private:
  std::unique_ptr<Child> spawn(int i) {
    return std::make_unique<Child>(program_.argv(name_, "p-" + std::to_string(i)),
                                   config_.work / program_.err_file);
  }

  const Config& config_;
  IoThread& io_;
  Client& probe_;
  Program program_;
  std::string name_;
  std::unique_ptr<Child> leader_;
};

}  // namespace election::bench
