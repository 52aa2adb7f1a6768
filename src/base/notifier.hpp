// A signal that coroutines on one executor can wait for, again and again.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <cstdint>

namespace election::detail {

/// notify() wakes every coroutine waiting in wait() at that moment. A waiter checks its
/// condition before it waits (on one executor nothing runs in between, so no notification is
/// missed) and again after. Not thread-safe.
class Notifier {
 public:
  explicit Notifier(boost::asio::any_io_executor executor)
      : timer_(std::move(executor), boost::asio::steady_timer::time_point::max()) {}

  void notify() {
    ++generation_;
    timer_.cancel();
  }

  /// Returns after the next notify(); throws operation_aborted when the wait itself is
  /// cancelled. The Notifier must outlive the wait.
  boost::asio::awaitable<void> wait() {
    const auto seen = generation_;
    boost::system::error_code ec;
    // The timer never expires: notify() cancels it, so the generation tells a notification
    // from a cancelled wait. (Setting its expiry here would cancel the other waiters.)
    co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (generation_ == seen)
      throw boost::system::system_error(boost::asio::error::operation_aborted);
  }

 private:
  boost::asio::steady_timer timer_;
  std::uint64_t generation_ = 0;
};

}  // namespace election::detail
