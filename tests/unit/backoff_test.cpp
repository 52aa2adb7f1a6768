#include "base/backoff.hpp"

#include <catch2/catch.hpp>

using election::detail::Backoff;
using namespace std::chrono_literals;

TEST_CASE("backoff doubles up to its cap, with each delay in [d/2, d]", "[backoff]") {
  Backoff backoff(100ms, 800ms, 42);
  const std::chrono::milliseconds ceilings[] = {100ms, 200ms, 400ms, 800ms, 800ms, 800ms};
  for (auto ceiling : ceilings) {
    const auto d = backoff.next();
    CHECK(d >= ceiling / 2);
    CHECK(d <= ceiling);
  }
}

TEST_CASE("backoff starts again from the initial delay after reset", "[backoff]") {
  Backoff backoff(100ms, 10s, 7);
  for (int i = 0; i < 10; ++i) backoff.next();
  backoff.reset();
  CHECK(backoff.next() <= 100ms);
}

TEST_CASE("backoff spreads retries of different clients", "[backoff]") {
  Backoff a(1000ms, 1000ms, 1), b(1000ms, 1000ms, 2);
  int same = 0;
  for (int i = 0; i < 20; ++i) same += a.next() == b.next();
  CHECK(same < 5);
}
