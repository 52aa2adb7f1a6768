#include "engine/leader_tracker.hpp"

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

namespace {

using Change = LeaderTracker::Change;

// The head e/a (create revision 5, lease 0xa) and e/b behind it (create 7, lease 0xb).
LeaderTracker line_of_two() {
  LeaderTracker t;
  t.reset({{"e/a", "1", 5, 5, 0xa}, {"e/b", "2", 7, 7, 0xb}}, 10);
  return t;
}

Change removed(std::string key, std::int64_t revision) {
  return {true, {std::move(key), {}, 0, revision, 0}};
}

Change signature(std::int64_t lease, std::string value, std::int64_t revision) {
  return {
      false,
      {election::detail::resignation_key("e", lease), std::move(value), revision, revision, lease}};
}

}  // namespace

TEST_CASE("a head removed with its signature in the same revision was resigned by its owner",
          "[leader-tracker]") {
  auto before = line_of_two();  // the signature before the deletion, within the revision
  auto a = before.apply("e", {signature(0xa, "5", 11), removed("e/a", 11)});
  REQUIRE(a.head_removed_signed);
  CHECK(*a.head_removed_signed);
  REQUIRE(a.events.size() == 1);
  CHECK(a.events[0].leader->key == "e/b");
  CHECK(before.line().size() == 1);  // the signature is not a candidate

  auto after = line_of_two();  // and after it
  auto b = after.apply("e", {removed("e/a", 11), signature(0xa, "5", 11)});
  REQUIRE(b.head_removed_signed);
  CHECK(*b.head_removed_signed);
}

TEST_CASE("a head removed without its own signature was not resigned by its owner",
          "[leader-tracker]") {
  auto plain = line_of_two();  // etcdctl del, a revocation, etcdctl elect's resign
  auto a = plain.apply("e", {removed("e/a", 11)});
  REQUIRE(a.head_removed_signed);
  CHECK_FALSE(*a.head_removed_signed);

  auto other_revision = line_of_two();  // a signature of another revision
  auto b = other_revision.apply("e", {signature(0xa, "5", 11), removed("e/a", 12)});
  CHECK_FALSE(*b.head_removed_signed);

  auto other_key = line_of_two();  // another incarnation of the key, or another lease
  auto c = other_key.apply("e", {signature(0xa, "4", 11), removed("e/a", 11)});
  CHECK_FALSE(*c.head_removed_signed);
  auto d = line_of_two().apply("e", {signature(0xb, "5", 11), removed("e/a", 11)});
  CHECK_FALSE(*d.head_removed_signed);
}

TEST_CASE("a candidate behind the head leaving is no vacancy", "[leader-tracker]") {
  auto t = line_of_two();
  auto a = t.apply("e", {removed("e/b", 11)});
  CHECK_FALSE(a.head_removed_signed);
  CHECK(a.events.empty());
}
