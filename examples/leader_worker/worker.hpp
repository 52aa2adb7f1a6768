// The life of one leader-worker node. Worker::run() builds the etcd client and the
// election::Leadership from the Config (with CounterWork as the leader's work and Reports as its
// hooks), serves --metrics if asked, connects (failing fast when etcd cannot be reached), runs the
// leader loop until SIGINT or SIGTERM, then resigns within a time limit, and returns the exit
// code. set_stop_signals_blocked() holds those signals back until run() is ready for them.
// Definitions in worker.cpp.
#pragma once

#include "config.hpp"
#include "events.hpp"
#include "reports.hpp"
#include "work.hpp"

#include <election/client.hpp>
#include <election/leadership.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace leader_worker {

/// Blocks or unblocks SIGINT and SIGTERM in the calling thread (and in the threads it starts).
void set_stop_signals_blocked(bool blocked);

class Worker {
 public:
  Worker(const Config& config, Events& events)
      : config_(config), events_(events), reports_(config, events), work_(config, events) {}

  /// The whole life of the node; returns the exit code.
  boost::asio::awaitable<int> run();

 private:
  boost::asio::awaitable<void> lifecycle(election::Client& client, election::Leadership& leadership,
                                         boost::asio::steady_timer& stop_requested);
  boost::asio::awaitable<void> start(election::Client& client);

  const Config& config_;
  Events& events_;
  Reports reports_;
  CounterWork work_;
};

}  // namespace leader_worker
