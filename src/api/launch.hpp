// Runs one of the library's coroutines for a public operation, on the Client's executor: for a
// completion-token form, completing the caller's handler on the handler's own executor with
// its cancellation slot, and its failure as an error_code (and diagnostics); for an awaitable
// form, as a child of the awaiting coroutine. Both filter cancellation alike.
// Private to the library: instantiated only in its compiled code.
#pragma once

#include "api/access.hpp"
#include "election/error.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <string>
#include <utility>

namespace election::detail {

/// Which cancellation types an operation honours. `with_effects`: terminal and partial (the
/// operation has effects when cancelled: a campaign withdraws, a write may have landed).
/// `without_effects`: also total (a wait that loses nothing when cut short). `set_by_op`: the
/// operation's own first step sets its filter (campaign_of), so no coroutine wraps it: a frame
/// less for each of the thousands of campaigns a Session may have waiting at once.
enum class Cancellation { with_effects, without_effects, set_by_op };

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
  if (diag) access::fill(*diag, std::move(text), std::move(server));
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

// `op` under its filter: wrapped in filtered(), unless it sets its own.
template <class T>
boost::asio::awaitable<T> with_filter(boost::asio::awaitable<T> op, Cancellation c) {
  if (c == Cancellation::set_by_op) return op;
  return filtered(std::move(op), c);
}

/// Runs `op` on `executor` (the Client's) and completes `handler` with its outcome. The
/// handler's allocator serves the handler's own storage (any_completion_handler's); the
/// operation's state is the library's.
template <class T, class... Values>
void launch(const boost::asio::any_io_executor& executor, boost::asio::awaitable<T> op,
            boost::asio::any_completion_handler<void(boost::system::error_code, Values...)> handler,
            diagnostics* diag, Cancellation cancellation) {
  if (diag) diag->clear();
  auto slot = boost::asio::get_associated_cancellation_slot(handler);
  auto where = boost::asio::get_associated_executor(handler, executor);
  boost::asio::co_spawn(executor, with_filter(std::move(op), cancellation),
                        boost::asio::bind_cancellation_slot(
                            slot, boost::asio::bind_executor(
                                      where, Completion<Values...>(std::move(handler), diag))));
}

/// An operation of an object that is gone (destroyed, or moved from): completes `handler` with
/// errc::object_gone, as if posted, on the handler's executor (or the system executor).
template <class... Values>
void refuse_gone(
    boost::asio::any_completion_handler<void(boost::system::error_code, Values...)> handler,
    diagnostics* diag, const char* what) {
  if (diag) diag->clear();
  auto where = boost::asio::get_associated_executor(handler);
  auto complete = [handler = std::move(handler), diag, what]() mutable {
    auto failure = std::make_exception_ptr(
        error(errc::object_gone, std::string(what) + ": the object was destroyed or moved from"));
    const auto ec = to_error(failure, diag);
    std::move(handler)(ec, Values{}...);
  };
  // Never inline: through the system executor to the handler's own.
  boost::asio::post(boost::asio::system_executor(),
                    [where, complete = std::move(complete)]() mutable {
                      boost::asio::dispatch(where, std::move(complete));
                    });
}

/// The awaitable form of an operation: `op` runs on `executor` (the Client's) as a child of the
/// awaiting coroutine, which gets its value or its exception back on its own executor. The
/// awaiting coroutine's cancellation reaches the child through its own filter first (Asio's
/// default lets terminal through), then through `cancellation`, as for the token forms.
template <class T>
boost::asio::awaitable<T> run_on(const boost::asio::any_io_executor& executor,
                                 boost::asio::awaitable<T> op, Cancellation cancellation) {
  return boost::asio::co_spawn(executor, with_filter(std::move(op), cancellation),
                               boost::asio::use_awaitable);
}

}  // namespace election::detail
