// What every completion-token operation of the library shares: a small template in the header
// that hands the (type-erased) handler to compiled code. A user's build compiles only this.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <utility>

namespace election {

class diagnostics;

/// The token an operation uses when none is given: Asio's default for the library's executor
/// type (boost::asio::deferred in Boost 1.81), so `co_await p.async_campaign()` works in an
/// Asio coroutine and `p.async_campaign()(callback)` anywhere.
using default_token = boost::asio::default_completion_token_t<boost::asio::any_io_executor>;

namespace detail {

/// Starts an operation with signature `Signature` for `token`: `start(handler)` receives the
/// handler as boost::asio::any_completion_handler<Signature> and runs the operation's compiled
/// code. The handler's associated executor, allocator and cancellation slot travel with it.
template <class Signature, class CompletionToken, class Start>
auto initiate(CompletionToken&& token, Start start) {
  return boost::asio::async_initiate<CompletionToken, Signature>(
      [](auto handler, Start start) {
        start(boost::asio::any_completion_handler<Signature>(std::move(handler)));
      },
      token, std::move(start));
}

}  // namespace detail
}  // namespace election
