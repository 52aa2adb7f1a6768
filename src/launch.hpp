// Runs one of the library's coroutines for a completion-token operation: on the Client's
// executor, completing the caller's handler on the handler's own executor, with the handler's
// cancellation slot and allocator, and its failure as an error_code (and diagnostics).
// Private to the library: instantiated only in its compiled code.
#pragma once

#include "election/error.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>

#include <exception>
#include <string>
#include <utility>

namespace election::detail {

/// Which cancellation types an operation honours. `with_effects`: terminal and partial (the
/// operation has effects when cancelled: a campaign withdraws, a write may have landed).
/// `without_effects`: also total (a wait that loses nothing when cut short).
enum class Cancellation { with_effects, without_effects };

/// The failure in `e` as an error_code, with the text an awaitable operation would throw into
/// `diag` (without Boost's " [category:value]" tail).
inline boost::system::error_code to_error(std::exception_ptr e, diagnostics* diag) {
  boost::system::error_code ec;
  std::string text, server;
  try {
    std::rethrow_exception(e);
  } catch (const error& x) {
    ec = x.code();
    text = x.what();
    server = x.server_message();
  } catch (const boost::system::system_error& x) {
    ec = x.code();
    text = x.what();
  } catch (const std::exception& x) {
    ec = make_error_code(boost::system::errc::io_error);
    text = x.what();
  }
  if (const auto tail = text.rfind(" [" + std::string(ec.category().name()) + ":");
      tail != std::string::npos && text.back() == ']')
    text.erase(tail);
  if (diag) diag->assign(std::move(text), std::move(server));
  return ec;
}

template <class... Values>
class Completion {
 public:
  using Handler = boost::asio::any_completion_handler<void(boost::system::error_code, Values...)>;

  Completion(Handler handler, diagnostics* diag) : handler_(std::move(handler)), diag_(diag) {}

  template <class... Results>
  void operator()(std::exception_ptr e, Results&&... results) {
    const auto ec = e ? to_error(e, diag_) : boost::system::error_code();
    std::move(handler_)(ec, std::forward<Results>(results)...);
  }

 private:
  Handler handler_;
  diagnostics* diag_;
};

// The spawned coroutine's own cancellation state (not the caller's): which types reach `op`.
inline boost::asio::awaitable<void> allow(Cancellation c) {
  if (c == Cancellation::with_effects)
    co_await boost::asio::this_coro::reset_cancellation_state(
        boost::asio::enable_partial_cancellation());
  else
    co_await boost::asio::this_coro::reset_cancellation_state(
        boost::asio::enable_total_cancellation());
}

template <class T>
boost::asio::awaitable<T> filtered(boost::asio::awaitable<T> op, Cancellation c) {
  co_await allow(c);
  co_return co_await std::move(op);
}

inline boost::asio::awaitable<void> filtered(boost::asio::awaitable<void> op, Cancellation c) {
  co_await allow(c);
  co_await std::move(op);
}

/// Runs `op` on `executor` (the Client's) and completes `handler` with its outcome.
template <class T, class... Values>
void launch(const boost::asio::any_io_executor& executor, boost::asio::awaitable<T> op,
            boost::asio::any_completion_handler<void(boost::system::error_code, Values...)> handler,
            diagnostics* diag, Cancellation cancellation) {
  if (diag) diag->clear();
  auto slot = boost::asio::get_associated_cancellation_slot(handler);
  auto where = boost::asio::get_associated_executor(handler, executor);
  auto allocator = boost::asio::get_associated_allocator(handler);
  boost::asio::co_spawn(
      executor, filtered(std::move(op), cancellation),
      boost::asio::bind_cancellation_slot(
          slot, boost::asio::bind_executor(
                    where, boost::asio::bind_allocator(
                               allocator, Completion<Values...>(std::move(handler), diag)))));
}

}  // namespace election::detail
