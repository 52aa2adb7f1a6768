// election::first_of: race two awaitables; the first to complete, succeed or fail, decides.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <type_traits>
#include <variant>

namespace election {

namespace detail::race {
// Each side runs on a coroutine of its own, whose cancellation state lets every type through:
// what reaches it has passed the caller's filter already (or is the loser's cancellation).
template <class T>
struct Lift {
  static boost::asio::awaitable<T> run(boost::asio::awaitable<T> a) {
    co_await boost::asio::this_coro::reset_cancellation_state(
        boost::asio::enable_total_cancellation());
    co_return co_await std::move(a);
  }
};
template <>
struct Lift<void> {
  static boost::asio::awaitable<std::monostate> run(boost::asio::awaitable<void> a) {
    co_await boost::asio::this_coro::reset_cancellation_state(
        boost::asio::enable_total_cancellation());
    co_await std::move(a);
    co_return std::monostate{};
  }
};
template <class T>
using Value = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
}  // namespace detail::race

/// Runs `a` and `b` concurrently; when the first completes, the other is cancelled and waited
/// for. Returns the first's value (std::monostate for void), or rethrows its exception.
///
/// Unlike Boost 1.81's awaitable `||`, which waits for the first *success* (so a failure of one
/// side waits on the other, and two failures become multiple_exceptions), the first outcome
/// decides here, whatever it is.
///
/// The loser is cancelled with every cancellation type: an operation that honours total
/// cancellation (Observer::next, Participant::keep_alive) loses nothing when it loses; one
/// whose cancellation has effects (a campaign withdraws) has them. A cancellation of the
/// awaiting coroutine reaches both sides with its type (terminal, partial or total), as far as
/// that coroutine's own filter lets it through (Asio's default: terminal only).
template <class A, class B>
boost::asio::awaitable<std::variant<detail::race::Value<A>, detail::race::Value<B>>> first_of(
    boost::asio::awaitable<A> a, boost::asio::awaitable<B> b) {
  namespace asio = boost::asio;
  auto executor = co_await asio::this_coro::executor;
  auto [order, e0, r0, e1, r1] =
      co_await asio::experimental::make_parallel_group(
          asio::co_spawn(executor, detail::race::Lift<A>::run(std::move(a)), asio::deferred),
          asio::co_spawn(executor, detail::race::Lift<B>::run(std::move(b)), asio::deferred))
          .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  using Result = std::variant<detail::race::Value<A>, detail::race::Value<B>>;
  if (order[0] == 0) {
    if (e0) std::rethrow_exception(e0);
    co_return Result(std::in_place_index<0>, std::move(r0));
  }
  if (e1) std::rethrow_exception(e1);
  co_return Result(std::in_place_index<1>, std::move(r1));
}

}  // namespace election
