// What a Leadership's loop reports: the hooks it calls, the metrics it counts, and the state and
// times health() judges by. The loop (api/leadership.cpp) says what happened, on the Client's
// executor; health() and metrics() read it from any thread, under one mutex, also while the
// executor is blocked.
#pragma once

#include "election/leadership.hpp"

#include "base/time_source.hpp"
#include "lease/lease_state.hpp"

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace election::detail {

class LeadershipRecord {
 public:
  using Time = TimeSource::time_point;

  LeadershipRecord(const TimeSource& time, LeadershipHooks hooks,
                   std::chrono::milliseconds stale_after, TimeSource::duration failing_for)
      : time_(time),
        hooks_(std::move(hooks)),
        stale_after_(stale_after),
        failing_for_(failing_for) {}

  /// The send time of the lease's last renewal etcd answered.
  static Time answered(const LeaseState& lease);
  /// The first instant etcd could let another candidate in: the TTL from that send time (etcd
  /// counts it from when the renewal arrived, later).
  static Time expiry(const LeaseState& lease);

  Time now() const { return time_.now(); }

  // --- on the Client's executor, from the loop ------------------------------------------------

  void campaigning();  // a campaign starts: in line from now
  /// hooks.campaigning, once for each lease a campaign uses: again if the campaign had to
  /// grant another (the one acquired was lost before it entered the line).
  void lease_in_use(std::int64_t lease, std::chrono::seconds ttl);
  void in_line();        // the key is in line: campaigning works
  void campaign_over();  // won or failed: time in line counted
  void won(const LeaderKey& key, std::shared_ptr<LeaseState> lease);
  /// The leadership ended while the work may run on; `limit`: when another could lead.
  void leadership_ended(Time limit);
  void work_overran(const LeaderKey& key);
  /// The work has stopped and the term is over, as `lost` says.
  void term_over(const LeadershipLost& lost);
  void retrying(const boost::system::error_code& code, const std::string& message,
                std::chrono::milliseconds delay);
  void observed(const LeaderEvent& event);
  void stopped();

  // --- from any thread ------------------------------------------------------------------------

  Health health() const;
  LeadershipMetrics snapshot() const;

 private:
  void set_state(Health::State s);

  const TimeSource& time_;
  const LeadershipHooks hooks_;
  const std::chrono::milliseconds stale_after_;
  const TimeSource::duration failing_for_;

  mutable std::mutex mutex_;
  Health::State state_ = Health::State::idle;
  LeadershipMetrics metrics_;
  bool leading_ = false;       // from the win until keep_alive() says it ended
  bool work_running_ = false;  // from the win until the work has stopped
  std::shared_ptr<LeaseState> term_lease_;
  std::optional<Time> limit_;  // once the leadership ended: when another could lead
  std::optional<std::int64_t> reported_lease_;  // by hooks.campaigning, in this campaign
  std::optional<Time> in_line_since_;
  std::optional<Time> failing_since_;
  std::string last_failure_;
};

}  // namespace election::detail
