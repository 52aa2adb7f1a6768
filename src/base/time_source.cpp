#include "base/time_source.hpp"

#include "base/throw.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include <sys/timerfd.h>

namespace election::detail {

namespace {

int make_timerfd() {
#ifdef CLOCK_BOOTTIME
  const int fd = ::timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
#else
  const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
#endif
  if (fd < 0)
    throw_error(errc::invalid_argument,
                std::string("timerfd_create(CLOCK_BOOTTIME): ") + std::strerror(errno));
  return fd;
}

}  // namespace

BootTimer::BootTimer(boost::asio::any_io_executor executor, TimeSource& time)
    : time_(time), fd_(std::move(executor), make_timerfd()) {
  time_.add(this);
}

BootTimer::~BootTimer() { time_.remove(this); }

void BootTimer::arm() {
  itimerspec spec{};  // all zero: disarmed
  if (expiry_ != TimeSource::time_point::max()) {
    // The kernel's boot time; a time in the past fires at once. Zero would disarm: use 1 ns.
    const auto real =
        std::max(expiry_ - time_.skew(), TimeSource::time_point(std::chrono::nanoseconds(1)));
    const auto since_boot = real.time_since_epoch();
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_boot);
    spec.it_value.tv_sec = static_cast<time_t>(seconds.count());
    spec.it_value.tv_nsec = static_cast<long>((since_boot - seconds).count());
  }
  // Re-arming also clears an expiry not yet read, so a wait after this one sees only this one.
  ::timerfd_settime(fd_.native_handle(), TFD_TIMER_ABSTIME, &spec, nullptr);
}

}  // namespace election::detail
