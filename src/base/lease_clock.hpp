// The local view of when a lease could expire on the server.
#pragma once

#include "election/clock.hpp"

#include <algorithm>
#include <chrono>

namespace election::detail {

/// Tracks a lease's local deadline. A renewal that etcd acknowledged was applied no earlier than
/// the moment its request was sent, so the lease lives at least until send time + TTL; the
/// deadline is that instant minus a safety margin, counted on lease_clock (which, unlike the
/// steady clock, runs on while the host is suspended, as etcd's clock does). The deadline only
/// moves forward: an acknowledgement of an older request never shortens it.
class LeaseClock {
 public:
  using clock = lease_clock;

  /// The margin used when none is given: a tenth of the TTL, at most one second.
  static std::chrono::milliseconds default_margin(std::chrono::seconds ttl) {
    return std::min<std::chrono::milliseconds>(
        std::chrono::duration_cast<std::chrono::milliseconds>(ttl) / 10, std::chrono::seconds(1));
  }

  /// `granted_at` is when the grant request was sent; `ttl` the TTL the server granted.
  LeaseClock(clock::time_point granted_at, std::chrono::seconds ttl,
             std::chrono::milliseconds margin)
      : ttl_(ttl),
        margin_(margin),
        last_ack_send_(granted_at),
        deadline_(granted_at + ttl - margin) {}

  /// A keep-alive sent at `sent` was answered with `ttl` (> 0).
  void renewed(clock::time_point sent, std::chrono::seconds ttl) {
    ttl_ = ttl;
    if (sent + ttl - margin_ > deadline_) {
      deadline_ = sent + ttl - margin_;
      last_ack_send_ = sent;
    }
  }

  /// Whether an answer to a renewal sent at `sent` would still move the deadline.
  bool would_extend(clock::time_point sent) const { return sent + ttl_ - margin_ > deadline_; }

  clock::time_point deadline() const { return deadline_; }
  bool expired(clock::time_point now) const { return now >= deadline_; }

  /// When the next keep-alive is due after one sent at `sent`: every third of the TTL, so two
  /// renewals can fail before the deadline.
  clock::time_point next_renewal(clock::time_point sent) const { return sent + period(); }
  std::chrono::milliseconds period() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(ttl_) / 3;
  }

  std::chrono::seconds ttl() const { return ttl_; }
  clock::time_point last_acknowledged_send() const { return last_ack_send_; }

 private:
  std::chrono::seconds ttl_;
  std::chrono::milliseconds margin_;
  clock::time_point last_ack_send_;
  clock::time_point deadline_;
};

}  // namespace election::detail
