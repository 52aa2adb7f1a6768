// lease_clock, the injectable TimeSource, the BootTimer, and the takeover delay by etcd version.
#include "base/time_source.hpp"
#include "election/participant.hpp"

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <ctime>

using election::lease_clock;
using election::detail::BootTimer;
using election::detail::TimeSource;
using namespace std::chrono_literals;

TEST_CASE(
    "lease_clock is CLOCK_BOOTTIME: it counts what the monotonic clock misses while suspended",
    "[clock]") {
  timespec boot{}, mono{};
  ::clock_gettime(CLOCK_BOOTTIME, &boot);
  const auto now = lease_clock::now();
  ::clock_gettime(CLOCK_MONOTONIC, &mono);
  const auto boot_ns = std::chrono::seconds(boot.tv_sec) + std::chrono::nanoseconds(boot.tv_nsec);
  CHECK(now.time_since_epoch() >= boot_ns);
  CHECK(now.time_since_epoch() - boot_ns < 50ms);
  // Boot time is monotonic time plus the time suspended so far, never less.
  const auto mono_ns = std::chrono::seconds(mono.tv_sec) + std::chrono::nanoseconds(mono.tv_nsec);
  CHECK(now.time_since_epoch() + 50ms >= mono_ns);
}

TEST_CASE("a BootTimer fires at its expiry, and at once for one already past", "[clock]") {
  boost::asio::io_context io;
  TimeSource time;
  BootTimer timer(io.get_executor(), time);
  boost::system::error_code result = boost::asio::error::would_block;
  const auto start = std::chrono::steady_clock::now();
  timer.expires_at(time.now() + 50ms);
  timer.async_wait([&](boost::system::error_code ec) { result = ec; });
  io.run_for(2s);
  CHECK_FALSE(result);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(took >= 50ms);
  CHECK(took < 500ms);

  io.restart();
  result = boost::asio::error::would_block;
  timer.expires_at(time.now() - 1s);
  timer.async_wait([&](boost::system::error_code ec) { result = ec; });
  io.run_for(1s);
  CHECK_FALSE(result);
}

TEST_CASE("a suspend acted out on the TimeSource makes a BootTimer fire at once",
          "[clock][suspend]") {
  boost::asio::io_context io;
  TimeSource time;
  BootTimer timer(io.get_executor(), time);
  const auto before = time.now();
  boost::system::error_code result = boost::asio::error::would_block;
  timer.expires_at(before + 10s);  // a lease's local deadline, 10 s away
  timer.async_wait([&](boost::system::error_code ec) { result = ec; });
  io.run_for(100ms);
  CHECK(result == boost::asio::error::would_block);  // not yet
  const auto start = std::chrono::steady_clock::now();
  time.suspend_for(30s);  // the host sleeps 30 s: boot time moves on, monotonic does not
  CHECK(time.now() - before >= 30s);
  io.restart();
  io.run_for(1s);
  CHECK_FALSE(result);
  CHECK(std::chrono::steady_clock::now() - start < 200ms);
}

TEST_CASE("a cancelled BootTimer wait ends with operation_aborted", "[clock]") {
  boost::asio::io_context io;
  TimeSource time;
  BootTimer timer(io.get_executor(), time);
  boost::system::error_code result;
  timer.expires_at(time.now() + 10s);
  timer.async_wait([&](boost::system::error_code ec) { result = ec; });
  io.poll();
  timer.cancel();
  io.run_for(1s);
  CHECK(result == boost::asio::error::operation_aborted);
}

TEST_CASE("the default takeover delay covers etcd releases without the stale-leader fix",
          "[takeover-delay]") {
  using election::default_takeover_delay;
  CHECK(default_takeover_delay("3.4.23") == 200ms);  // Debian 12
  CHECK(default_takeover_delay("3.4.30") == 200ms);
  CHECK(default_takeover_delay("3.4.31") == 0ms);  // etcd #17465
  CHECK(default_takeover_delay("3.4.37") == 0ms);
  CHECK(default_takeover_delay("3.5.0") == 200ms);
  CHECK(default_takeover_delay("3.5.12") == 200ms);
  CHECK(default_takeover_delay("3.5.13") == 0ms);  // etcd #17425
  CHECK(default_takeover_delay("3.6.0") == 0ms);
  CHECK(default_takeover_delay("4.0.1") == 0ms);
  CHECK(default_takeover_delay("3.3.27") == 200ms);
  CHECK(default_takeover_delay("") == 200ms);  // etcd would not say: be safe
  CHECK(default_takeover_delay("v3.5.13") == 200ms);
  CHECK(default_takeover_delay("3.5") == 200ms);
}
