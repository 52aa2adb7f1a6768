#include "leader_tracker.hpp"

#include <catch2/catch.hpp>

using election::LeaderInfo;
using election::detail::LeaderTracker;

namespace {
LeaderInfo candidate(std::string key, std::int64_t create, std::int64_t mod, std::string value) {
  return {std::move(key), std::move(value), create, mod, 1};
}
}  // namespace

TEST_CASE("the first report is the state at start, with or without a leader", "[leader-tracker]") {
  LeaderTracker empty;
  auto e = empty.reset({}, 10);
  REQUIRE(e);
  CHECK_FALSE(e->has_leader());
  CHECK(e->revision == 10);

  LeaderTracker some;
  auto f = some.reset({candidate("e/2", 7, 7, "b"), candidate("e/1", 5, 5, "a")}, 10);
  REQUIRE(f);
  REQUIRE(f->has_leader());
  CHECK(f->leader->key == "e/1");
}

TEST_CASE("only changes of the leader are reported", "[leader-tracker]") {
  LeaderTracker t;
  t.reset({}, 1);
  auto a = t.put(candidate("e/a", 2, 2, "a"), 2);
  REQUIRE(a);
  CHECK(a->leader->value == "a");
  CHECK_FALSE(t.put(candidate("e/b", 3, 3, "b"), 3));  // queued behind a
  auto proclaim = t.put(candidate("e/a", 2, 4, "a2"), 4);
  REQUIRE(proclaim);
  CHECK(proclaim->leader->value == "a2");
  CHECK_FALSE(t.put(candidate("e/b", 3, 5, "b2"), 5));  // a waiting candidate's value
  CHECK_FALSE(t.erase("e/zzz", 6));                     // not a candidate
  auto next = t.erase("e/a", 7);
  REQUIRE(next);
  CHECK(next->leader->key == "e/b");
  CHECK(next->leader->value == "b2");
  auto none = t.erase("e/b", 8);
  REQUIRE(none);
  CHECK_FALSE(none->has_leader());
  CHECK_FALSE(t.erase("e/b", 9));
}

TEST_CASE("a re-read after compaction reports only what differs", "[leader-tracker]") {
  LeaderTracker t;
  t.reset({candidate("e/a", 2, 2, "a")}, 2);
  CHECK_FALSE(t.reset({candidate("e/a", 2, 2, "a"), candidate("e/b", 3, 3, "b")}, 9));
  auto changed = t.reset({candidate("e/b", 3, 3, "b")}, 12);
  REQUIRE(changed);
  CHECK(changed->leader->key == "e/b");
}
