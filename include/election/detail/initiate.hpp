// What every completion-token operation of the library shares: a small template in the header
// that hands the (type-erased) handler to compiled code, so a user's build compiles only this,
// and the default token.
#pragma once

#include "election/error.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace election {

/// The token every `async_*` operation uses when none is given: boost::asio::deferred, as
/// Boost.Redis has it. `co_await p.async_campaign()` in an Asio coroutine throws
/// boost::system::system_error on failure (give a `diagnostics&` to keep the text;
/// `co_await p.campaign()` throws election::error with it), and `p.async_campaign()(handler)`
/// launches it later with a handler of signature `void(error_code, T...)`.
using default_token = boost::asio::deferred_t;

namespace detail {

/// Starts an operation with signature `Signature` for `token`: `start(handler, diag)` receives
/// the handler as boost::asio::any_completion_handler<Signature> and runs the operation's
/// compiled code. The handler's associated executor, allocator and cancellation slot travel
/// with it. `start` must hold what the operation needs by value (the object's state, never
/// `this`), so that a deferred operation launched later, after the object was moved or
/// destroyed, finds its state or a clear error.
template <class Signature, class Start>
struct initiation {
  Start start;
  diagnostics* diag;
  template <class Handler>
  void operator()(Handler&& handler) {
    std::move(start)(boost::asio::any_completion_handler<Signature>(std::forward<Handler>(handler)),
                     diag);
  }
};

/// An operation's compiled start function with what it needs, held by value: `f(state, handler,
/// diag, args...)`. `state` is the object's shared state as it was when the operation was
/// made; null for an object moved from (the start function then completes with
/// errc::object_gone).
template <class F, class State, class... Args>
struct bound_start {
  F f;
  std::shared_ptr<State> state;
  std::tuple<Args...> args;

  template <class Handler>
  void operator()(Handler&& handler, diagnostics* diag) {
    std::apply(
        [&](auto&&... a) {
          f(std::move(state), std::forward<Handler>(handler), diag, std::move(a)...);
        },
        std::move(args));
  }
};

template <class F, class State, class... Args>
bound_start<F, State, std::decay_t<Args>...> bind_start(F f, const std::shared_ptr<State>& state,
                                                        Args&&... args) {
  return {f, state, {std::forward<Args>(args)...}};
}

template <class Signature, class CompletionToken, class Start>
auto initiate(CompletionToken&& token, diagnostics* diag, Start start) {
  return boost::asio::async_initiate<CompletionToken, Signature>(
      initiation<Signature, Start>{std::move(start), diag}, token);
}

}  // namespace detail
}  // namespace election
