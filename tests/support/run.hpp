// Runs a test coroutine on a fresh io_context with a time limit and rethrows its failure on the
// test thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>

namespace election::test {

namespace asio = boost::asio;

/// `make()` returns the test's awaitable<void>; it is called once, and stays alive until the
/// coroutine has finished, so a lambda's captures are safe to use in its body.
template <class MakeCoroutine>
void run(MakeCoroutine make, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  asio::io_context context;
  asio::cancellation_signal stop;
  std::exception_ptr failure;
  bool done = false;
  asio::co_spawn(context, make(),
                 asio::bind_cancellation_slot(stop.slot(), [&](std::exception_ptr e) {
                   failure = e;
                   done = true;
                 }));
  context.run_for(limit);
  if (!done) {
    // Let the coroutine unwind (and its Client close) before the io_context goes away.
    stop.emit(asio::cancellation_type::terminal);
    context.restart();
    context.run_for(std::chrono::seconds(10));
    throw std::runtime_error("the test coroutine did not finish within its time limit");
  }
  if (failure) std::rethrow_exception(failure);
}

inline asio::awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

/// Polls `ready()` every 5 ms until it holds or `limit` passes; returns its last value.
template <class Predicate>
asio::awaitable<bool> wait_until(Predicate ready, std::chrono::steady_clock::duration limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= end) co_return false;
    co_await sleep_for(std::chrono::milliseconds(5));
  }
  co_return true;
}

/// Like wait_until, but a timeout fails the test, saying what did not happen.
template <class Predicate>
asio::awaitable<void> require_within(Predicate ready, std::chrono::steady_clock::duration limit,
                                     const char* what) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= end)
      throw std::runtime_error(std::string("timed out waiting for ") + what);
    co_await sleep_for(std::chrono::milliseconds(5));
  }
}

/// The error a coroutine `f()` fails with (a system_error's code), or no error.
template <class F>
asio::awaitable<boost::system::error_code> error_of(F f) {
  try {
    co_await f();
  } catch (const boost::system::system_error& e) {
    co_return e.code();
  }
  co_return boost::system::error_code{};
}

}  // namespace election::test
