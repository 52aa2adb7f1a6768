// The leader's work in leader-worker: once a second, the first time at once, it writes a counter
// (ELECTION-counter) through a fenced write, which etcd applies only while this node's leader key
// still exists, and prints a `work` event for each write. The value names its writer, its
// sequence number and its fence, so that etcd's history alone says who wrote what under which
// leadership. The sequence numbers go on across terms. Definitions in work.cpp.
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
  boost::asio::awaitable<void> work_loop(election::Participant& me, election::LeaderKey key);

  const Config& config_;
  Events& events_;
  std::string counter_key_;
  std::int64_t seq_ = 0;
};

}  // namespace leader_worker
