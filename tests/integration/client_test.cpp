// Client against good and bad endpoints.
#include "api/access.hpp"
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/run.hpp"
#include "transport/client_core.hpp"

#include <catch2/catch.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using election::errc;
using election::test::run;
using Clock = std::chrono::steady_clock;

TEST_CASE("a client connects to the fixture's etcd", "[client]") {
  run([]() -> asio::awaitable<void> {
    election::ClientOptions options;
    options.endpoints = election::test::fixture_endpoints();
    election::Client client(co_await asio::this_coro::executor, options);
    co_await client.connect();
  });
}

TEST_CASE("an unreachable endpoint fails with errc::unreachable within the connect timeout",
          "[client]") {
  run([]() -> asio::awaitable<void> {
    election::ClientOptions options;
    options.endpoints = {"127.0.0.1:1"};  // nothing listens on port 1 of loopback
    options.connect_timeout = 700ms;
    election::Client client(co_await asio::this_coro::executor, options);
    for (int attempt = 0; attempt < 2; ++attempt) {
      const auto start = Clock::now();
      try {
        if (attempt == 0)
          co_await client.connect();
        else
          co_await election::Lease::grant(client, 5s);
        FAIL("connected to nothing");
      } catch (const boost::system::system_error& e) {
        CHECK(e.code() == errc::unreachable);
        CHECK_THAT(e.what(), Catch::Contains("127.0.0.1:1"));
      }
      const auto elapsed = Clock::now() - start;
      CHECK(elapsed >= 700ms);
      CHECK(elapsed < 700ms + 500ms);
    }
  });
}

TEST_CASE("bad client options are refused at construction, naming the problem", "[client]") {
  asio::io_context context;
  auto code_of = [&](std::vector<std::string> endpoints) {
    election::ClientOptions options;
    options.endpoints = std::move(endpoints);
    try {
      election::Client client(context.get_executor(), options);
    } catch (const boost::system::system_error& e) {
      return e.code();
    }
    return boost::system::error_code{};
  };
  CHECK(code_of({}) == errc::no_endpoints);
  CHECK(code_of({"127.0.0.1"}) == errc::invalid_endpoint);
  CHECK(code_of({"127.0.0.1:99999"}) == errc::invalid_endpoint);
  election::ClientOptions zero;
  zero.endpoints = {"127.0.0.1:2379"};
  zero.request_timeout = 0ms;
  CHECK_THROWS_AS(election::Client(context.get_executor(), zero), boost::system::system_error);
}

TEST_CASE("background work that fails unexpectedly is reported and counted, not swallowed",
          "[client]") {
  run([]() -> asio::awaitable<void> {
    std::vector<election::ClientEvent> events;
    election::ClientOptions options;
    options.endpoints = election::test::fixture_endpoints();
    options.on_event = [&](const election::ClientEvent& e) { events.push_back(e); };
    election::Client client(co_await asio::this_coro::executor, options);
    const auto& core = election::detail::access::core(client);
    // What every background coroutine of the Client completes through.
    auto done = election::detail::ClientCore::background(core, "keep-alive");
    done(nullptr);  // finished: nothing to say
    done(std::make_exception_ptr(
        boost::system::system_error(asio::error::operation_aborted)));  // stopped: not a failure
    CHECK(client.metrics().internal_errors == 0);
    done(std::make_exception_ptr(std::runtime_error("map::at")));
    CHECK(client.metrics().internal_errors == 1);
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == election::ClientEvent::Kind::internal_error);
    CHECK(events[0].what == "keep-alive: map::at");
    co_return;
  });
}
