// The time a Client judges lease deadlines by, and a timer on that time.
// Private to the library.
#pragma once

#include "election/clock.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <atomic>
#include <vector>

namespace election::detail {

class BootTimer;

/// lease_clock time for one Client, with a skew that tests add to act out a suspended host
/// (boot time jumps ahead while the monotonic clock, and so every Asio timer, stood still).
/// In production the skew is always 0. now() is safe from any thread; the rest is for the
/// Client's executor.
class TimeSource {
 public:
  using time_point = lease_clock::time_point;
  using duration = lease_clock::duration;

  time_point now() const { return lease_clock::now() + skew(); }

  /// As if the host had been suspended for `d` just now: now() moves on by `d`, and every
  /// BootTimer on this source looks again at its expiry (as a real CLOCK_BOOTTIME timer would
  /// fire at once on resume).
  void suspend_for(duration d);

  /// The skew to subtract from a time on this source to get real boot time.
  duration skew() const { return duration(skew_.load(std::memory_order_relaxed)); }

 private:
  friend class BootTimer;
  void add(BootTimer* t) { timers_.push_back(t); }
  void remove(BootTimer* t) { std::erase(timers_, t); }

  // Atomic: health probes and metrics read now() from other threads.
  std::atomic<duration::rep> skew_{0};
  std::vector<BootTimer*> timers_;
};

/// A waitable timer on a TimeSource: it expires at a lease_clock time, counting suspended time
/// (a Linux timerfd on CLOCK_BOOTTIME, watched by the executor's reactor, so a host that wakes
/// after its deadline sees the timer fire at once). async_wait completes with success at expiry,
/// at once if the expiry has passed, and with operation_aborted when cancel() is called. Call
/// expires_at() before every wait: arming the timer also clears an expiry already seen.
/// The timer must outlive its TimeSource's use of it; one wait at a time.
class BootTimer {
 public:
  BootTimer(boost::asio::any_io_executor executor, TimeSource& time);
  ~BootTimer();
  BootTimer(const BootTimer&) = delete;
  BootTimer& operator=(const BootTimer&) = delete;

  void expires_at(TimeSource::time_point at) {
    expiry_ = at;
    arm();
  }
  TimeSource::time_point expiry() const { return expiry_; }

  /// Ends a pending wait with operation_aborted.
  void cancel() {
    boost::system::error_code ignored;
    fd_.cancel(ignored);
  }

  /// Completion signature void(error_code).
  template <class CompletionToken>
  auto async_wait(CompletionToken&& token) {
    return fd_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                          std::forward<CompletionToken>(token));
  }

 private:
  friend class TimeSource;
  void arm();

  TimeSource& time_;
  boost::asio::posix::stream_descriptor fd_;
  TimeSource::time_point expiry_ = TimeSource::time_point::max();
};

inline void TimeSource::suspend_for(duration d) {
  skew_.fetch_add(d.count(), std::memory_order_relaxed);
  for (auto* t : timers_) t->arm();
}

}  // namespace election::detail
