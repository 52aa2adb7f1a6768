// What the election library tells leader-worker, said as its events. Reports turns the client's
// stream events, etcd's version (with the takeover delay it implies), and the leader loop's
// hooks (campaigning, elected, lost, leader changes, retries, work that overran) into lines on
// Events. It remembers whether the node ever campaigned, so that the worker says "resigned"
// only then. Definitions in reports.cpp.
#pragma once

#include "config.hpp"
#include "events.hpp"

#include <election/client.hpp>
#include <election/leadership.hpp>

#include <boost/asio/awaitable.hpp>

namespace leader_worker {

class Reports {
 public:
  Reports(const Config& config, Events& events) : config_(config), events_(events) {}

  /// For ClientOptions::on_event: where the long-lived streams are, and when one moves off a
  /// member that stopped answering.
  void stream_event(const election::ClientEvent& e);

  /// Says which takeover delay the campaigns use, and why: the flag, or etcd's version.
  boost::asio::awaitable<void> report_takeover_delay(election::Client& client);

  /// What the leader loop reports, as the worker's events. `elected` asks the Leadership given
  /// to attach() for the TTL etcd granted.
  election::LeadershipHooks hooks();

  /// The Leadership the hooks report on, from its construction until it is destroyed (nullptr
  /// then).
  void attach(const election::Leadership* leadership) { leadership_ = leadership; }

  /// Whether a campaign ever started: only then is there a leadership to resign.
  bool campaigned() const { return campaigned_; }

 private:
  void report_lost(const election::LeadershipLost& lost);

  const Config& config_;
  Events& events_;
  const election::Leadership* leadership_ = nullptr;
  bool campaigned_ = false;
};

}  // namespace leader_worker
