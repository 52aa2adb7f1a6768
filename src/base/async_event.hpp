// A one-shot event that coroutines on one executor can wait for.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

namespace election::detail {

/// Set once, waited for by any number of coroutines. Not thread-safe: use on one executor.
/// A wait is cancellable; it then throws operation_aborted (unless the event was set first).
class AsyncEvent {
 public:
  explicit AsyncEvent(boost::asio::any_io_executor executor)
      : timer_(std::move(executor), boost::asio::steady_timer::time_point::max()) {}

  void set() {
    set_ = true;
    timer_.cancel();
  }

  bool is_set() const { return set_; }

  /// The caller must keep the event alive until the wait completes.
  boost::asio::awaitable<void> wait() {
    if (set_) co_return;
    // The timer never expires: set() wakes waiters by cancelling it, so the flag, not the
    // error code, tells a wake-up from a cancelled wait.
    boost::system::error_code ec;
    co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (!set_) throw boost::system::system_error(boost::asio::error::operation_aborted);
  }

  /// wait(), cancelled through `slot` instead of the awaiting coroutine's own cancellation
  /// state (which is left as it is). The slot is cleared again when the wait is over.
  boost::asio::awaitable<void> wait(boost::asio::cancellation_slot slot) {
    if (set_) co_return;
    // Cleared however the wait ends (a cancelled coroutine throws as it resumes): the timer's
    // handler must not stay in a slot that outlives this event.
    struct Clear {
      boost::asio::cancellation_slot& slot;
      ~Clear() { slot.clear(); }
    } clear{slot};
    boost::system::error_code ec;
    co_await timer_.async_wait(boost::asio::bind_cancellation_slot(
        slot, boost::asio::redirect_error(boost::asio::use_awaitable, ec)));
    if (!set_) throw boost::system::system_error(boost::asio::error::operation_aborted);
  }

 private:
  boost::asio::steady_timer timer_;
  bool set_ = false;
};

}  // namespace election::detail
