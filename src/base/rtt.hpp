// A round-trip time estimate, for timeouts that follow the link instead of a fixed guess.
#pragma once

#include <algorithm>
#include <chrono>

namespace election::detail {

/// Smoothed round-trip time and its variation, updated per sample as TCP does (RFC 6298:
/// srtt += (r - srtt) / 8, rttvar += (|r - srtt| - rttvar) / 4). timeout() is srtt + 4 rttvar,
/// but at least 1.5 srtt (a steady link's variation tends to zero, and a timeout at the round
/// trip itself would call every answer late): an answer later than that is unlikely to be a
/// slow one and likely a lost or stuck one. Not thread-safe.
class RttEstimator {
 public:
  using duration = std::chrono::nanoseconds;

  void sample(duration rtt) {
    rtt = std::max(rtt, duration::zero());
    if (samples_ == 0) {
      srtt_ = rtt;
      rttvar_ = rtt / 2;
    } else {
      const auto error = rtt > srtt_ ? rtt - srtt_ : srtt_ - rtt;
      rttvar_ += (error - rttvar_) / 4;
      srtt_ += (rtt - srtt_) / 8;
    }
    ++samples_;
  }

  bool known() const { return samples_ > 0; }

  /// srtt + 4 rttvar (at least 1.5 srtt), and at least `floor`; `floor` alone while there is
  /// no sample yet.
  duration timeout(duration floor) const {
    if (!known()) return floor;
    return std::max({floor, srtt_ + 4 * rttvar_, srtt_ + srtt_ / 2});
  }

 private:
  duration srtt_{0};
  duration rttvar_{0};
  unsigned long samples_ = 0;
};

}  // namespace election::detail
