// The leader's work in leader-worker: once a second, the first time at once, it writes a counter
// (ELECTION-counter) through a fenced write, which etcd applies only while this node's leader key
// still exists, and prints a `work` event for each write. The value names its writer, its
// sequence number and its fence, so that etcd's history alone says who wrote what under which
// leadership. The sequence numbers go on across terms. When the leadership ends the library
// cancels the work: it says so (`work-cancelled`), takes --stop-latency ms more to stop (0 by
// default), and says when it has stopped (`work-stopped`, also when it returns or fails), so a
// reader of the events knows when the work ran, not only when the node believed it led.
// Definitions in work.cpp.
#pragma once

#include "config.hpp"
#include "events.hpp"

#include <election/leadership.hpp>
#include <election/participant.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>

namespace leader_worker {

class CounterWork {
 public:
  CounterWork(const Config& config, Events& events)
      : config_(config), events_(events), counter_key_(config.election + "-counter") {}

  /// The work to give the Leadership. Never returns: the leadership's end cancels it; with
  /// --lock N it returns after N writes, which releases the lock.
  election::Leadership::Work work();

 private:
  /// write_loop(), then the stop: --stop-latency after a cancellation, and `work-stopped`.
  boost::asio::awaitable<void> work_loop(election::Participant& me, election::LeaderKey key);
  /// The writes, once a second, until cancelled (or N writes with --lock N).
  boost::asio::awaitable<void> write_loop(election::Participant& me,
                                          const election::LeaderKey& key);

  const Config& config_;
  Events& events_;
  std::string counter_key_;
  std::int64_t seq_ = 0;
};

}  // namespace leader_worker
