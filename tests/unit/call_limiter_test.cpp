// CallLimiter: at most so many requests in flight, the rest in order, a cancelled wait gives
// its turn on.
#include "transport/call_limiter.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <memory>
#include <optional>
#include <vector>

namespace asio = boost::asio;
using election::detail::CallLimiter;

namespace {

// A request that takes its turn, records that it runs, and holds its slot until released.
struct Request {
  std::optional<CallLimiter::Slot> slot;
  bool aborted = false;
};

asio::awaitable<void> take(CallLimiter& limiter, Request& r, std::vector<int>& order, int id) {
  try {
    auto slot = co_await limiter.acquire();
    order.push_back(id);
    r.slot.emplace(std::move(slot));
  } catch (const boost::system::system_error&) {
    r.aborted = true;
  }
}

}  // namespace

TEST_CASE("the limiter admits so many at once and the rest in the order they came",
          "[call-limiter]") {
  asio::io_context io;
  CallLimiter limiter(io.get_executor(), 2);
  std::vector<Request> requests(5);
  std::vector<int> order;
  for (int i = 0; i < 5; ++i)
    asio::co_spawn(io, take(limiter, requests[i], order, i), asio::detached);
  io.poll();
  CHECK(order == std::vector<int>{0, 1});
  CHECK(limiter.in_flight() == 2);
  CHECK(limiter.waiting() == 3);
  requests[1].slot.reset();  // one finishes: the first waiting one goes
  io.poll();
  CHECK(order == std::vector<int>{0, 1, 2});
  CHECK(limiter.in_flight() == 2);
  requests[0].slot.reset();
  requests[2].slot.reset();
  io.poll();
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
  requests[3].slot.reset();
  requests[4].slot.reset();
  CHECK(limiter.in_flight() == 0);
  CHECK(limiter.waiting() == 0);
}

TEST_CASE("a cancelled wait gives its turn on and a later one still gets in", "[call-limiter]") {
  asio::io_context io;
  CallLimiter limiter(io.get_executor(), 1);
  Request first, cancelled, last;
  std::vector<int> order;
  asio::cancellation_signal stop;
  asio::co_spawn(io, take(limiter, first, order, 0), asio::detached);
  asio::co_spawn(io, take(limiter, cancelled, order, 1),
                 asio::bind_cancellation_slot(stop.slot(), asio::detached));
  asio::co_spawn(io, take(limiter, last, order, 2), asio::detached);
  io.poll();
  CHECK(order == std::vector<int>{0});
  stop.emit(asio::cancellation_type::terminal);
  io.poll();
  CHECK(cancelled.aborted);
  first.slot.reset();  // the cancelled one is skipped: the last one goes
  io.poll();
  CHECK(order == std::vector<int>{0, 2});
  CHECK(limiter.in_flight() == 1);
  last.slot.reset();
  CHECK(limiter.in_flight() == 0);
}
