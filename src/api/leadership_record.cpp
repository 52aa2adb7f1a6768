#include "api/leadership_record.hpp"

#include <boost/asio/error.hpp>

#include <cstdio>

namespace election {

std::string reason_name(const boost::system::error_code& reason) {
  if (reason == errc::resigned) return "resigned";
  if (reason == errc::lease_expired) return "lease-expired";
  if (reason == errc::lease_revoked) return "lease-revoked";
  if (reason == errc::key_deleted) return "key-deleted";
  if (reason == errc::lease_deadline_passed) return "deadline-passed";
  if (reason == errc::client_closed) return "client-closed";
  if (reason == errc::work_finished) return "work-finished";
  if (reason == errc::work_failed) return "work-failed";
  if (reason == boost::asio::error::operation_aborted) return "shutdown";
  return reason.category().name() + std::string(":") + std::to_string(reason.value());
}

const char* state_name(Health::State state) {
  switch (state) {
    case Health::State::idle:
      return "idle";
    case Health::State::campaigning:
      return "campaigning";
    case Health::State::leading:
      return "leading";
    case Health::State::retrying:
      return "retrying";
    case Health::State::stopped:
      return "stopped";
  }
  return "unknown";
}

namespace detail {

namespace {

std::string seconds_text(TimeSource::duration d) {
  char out[32];
  std::snprintf(out, sizeof out, "%.1f s", std::chrono::duration<double>(d).count());
  return out;
}

}  // namespace

LeadershipRecord::Time LeadershipRecord::answered(const LeaseState& lease) {
  return Time(TimeSource::duration(lease.answered_send.load()));
}

LeadershipRecord::Time LeadershipRecord::expiry(const LeaseState& lease) {
  return answered(lease) + lease.clock.ttl();
}

void LeadershipRecord::set_state(Health::State s) {
  std::lock_guard lock(mutex_);
  state_ = s;
}

void LeadershipRecord::campaigning() {
  std::lock_guard lock(mutex_);
  state_ = Health::State::campaigning;
  in_line_since_ = now();
  reported_lease_.reset();
}

void LeadershipRecord::lease_in_use(std::int64_t lease, std::chrono::seconds ttl) {
  if (reported_lease_ == lease) return;
  reported_lease_ = lease;
  if (hooks_.campaigning) hooks_.campaigning({lease, ttl});
}

void LeadershipRecord::in_line() {
  std::lock_guard lock(mutex_);
  failing_since_.reset();
}

void LeadershipRecord::campaign_over() {
  std::lock_guard lock(mutex_);
  metrics_.time_in_line += now() - *in_line_since_;
  in_line_since_.reset();
}

void LeadershipRecord::won(const LeaderKey& key, std::shared_ptr<LeaseState> lease) {
  {
    std::lock_guard lock(mutex_);
    failing_since_.reset();
    state_ = Health::State::leading;
    leading_ = true;
    work_running_ = true;
    term_lease_ = std::move(lease);
    metrics_.is_leader = true;
    ++metrics_.terms_won;
  }
  if (hooks_.elected) hooks_.elected(key);
}

void LeadershipRecord::leadership_ended(Time limit) {
  std::lock_guard lock(mutex_);
  leading_ = false;
  metrics_.is_leader = false;
  limit_ = limit;
}

void LeadershipRecord::work_overran(const LeaderKey& key) {
  {
    std::lock_guard lock(mutex_);
    ++metrics_.work_overruns;
  }
  if (hooks_.work_overran) hooks_.work_overran(key);
}

void LeadershipRecord::term_over(const LeadershipLost& lost) {
  {
    std::lock_guard lock(mutex_);
    leading_ = false;
    work_running_ = false;
    metrics_.is_leader = false;
    term_lease_.reset();
    limit_.reset();
    ++metrics_.ends_by_reason[reason_name(lost.reason)];
  }
  if (hooks_.lost) hooks_.lost(lost);
}

void LeadershipRecord::retrying(const boost::system::error_code& code, const std::string& message,
                                std::chrono::milliseconds delay) {
  {
    std::lock_guard lock(mutex_);
    state_ = Health::State::retrying;
    if (!failing_since_) failing_since_ = now();
    last_failure_ = message;
    ++metrics_.retried_errors;
  }
  if (hooks_.retrying) hooks_.retrying({code, message, delay});
}

void LeadershipRecord::observed(const LeaderEvent& event) {
  {
    std::lock_guard lock(mutex_);
    ++metrics_.observer_events;
  }
  if (hooks_.leader_changed) hooks_.leader_changed(event);
}

void LeadershipRecord::stopped() { set_state(Health::State::stopped); }

Health LeadershipRecord::health() const {
  std::lock_guard lock(mutex_);
  Health h;
  h.state = state_;
  const auto t = now();
  if (leading_ && term_lease_) {
    const auto stale = t - answered(*term_lease_);
    if (stale > stale_after_) {
      h.healthy = false;
      h.reason = "leading, but no renewal has been answered for " + seconds_text(stale) +
                 ": the keep-alive is wedged (a blocked executor?)";
    }
  }
  if (!leading_ && work_running_ && limit_ && t >= *limit_) {
    h.healthy = false;
    h.reason = "the work has run on " + seconds_text(t - *limit_) +
               " after its leadership ended and another candidate could lead: it ignores its "
               "cancellation or blocks the executor";
  }
  if (failing_since_ && t - *failing_since_ > failing_for_) {
    h.healthy = false;
    h.reason =
        "campaigning has failed for " + seconds_text(t - *failing_since_) + ": " + last_failure_;
  }
  return h;
}

LeadershipMetrics LeadershipRecord::snapshot() const {
  std::lock_guard lock(mutex_);
  auto m = metrics_;
  const auto t = now();
  if (leading_ && term_lease_) m.since_renewal = t - answered(*term_lease_);
  if (in_line_since_) m.time_in_line += t - *in_line_since_;
  return m;
}

}  // namespace detail
}  // namespace election
