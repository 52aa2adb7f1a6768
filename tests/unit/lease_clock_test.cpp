#include "base/lease_clock.hpp"

#include <catch2/catch.hpp>

using election::detail::LeaseClock;
using namespace std::chrono_literals;

TEST_CASE("the deadline counts from the grant's send time, minus the margin", "[lease-clock]") {
  const auto t0 = LeaseClock::clock::time_point{} + 1000s;
  LeaseClock clock(t0, 9s, 500ms);
  CHECK(clock.deadline() == t0 + 9s - 500ms);
  CHECK(clock.period() == 3s);
  CHECK(clock.next_renewal(t0) == t0 + 3s);
  CHECK_FALSE(clock.expired(t0 + 8499ms));
  CHECK(clock.expired(t0 + 8500ms));
}

TEST_CASE("a renewal moves the deadline to its send time + TTL, never backwards", "[lease-clock]") {
  const auto t0 = LeaseClock::clock::time_point{} + 1000s;
  LeaseClock clock(t0, 6s, 0ms);
  clock.renewed(t0 + 2s, 6s);
  CHECK(clock.deadline() == t0 + 8s);
  CHECK(clock.last_acknowledged_send() == t0 + 2s);
  // A late answer to an older request must not shorten the deadline.
  clock.renewed(t0 + 1s, 6s);
  CHECK(clock.deadline() == t0 + 8s);
  CHECK(clock.last_acknowledged_send() == t0 + 2s);
}

TEST_CASE("the renewal period follows the TTL the server reports", "[lease-clock]") {
  LeaseClock clock(LeaseClock::clock::time_point{}, 3s, 0ms);
  clock.renewed(LeaseClock::clock::time_point{} + 1s, 9s);
  CHECK(clock.ttl() == 9s);
  CHECK(clock.period() == 3s);
}

TEST_CASE("the default margin is a tenth of the TTL, at most a second", "[lease-clock]") {
  CHECK(LeaseClock::default_margin(2s) == 200ms);
  CHECK(LeaseClock::default_margin(10s) == 1s);
  CHECK(LeaseClock::default_margin(60s) == 1s);
}
