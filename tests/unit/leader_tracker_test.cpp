#include "engine/campaign_engine.hpp"
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

// etcd 3.4.23 repeats watch events (#15275, fixed in 3.4.24) and a watch can travel back in time
// after a member restores a snapshot (#15271, fixed in 3.4.25): a PUT of a key at or below the
// revision the line already holds is not applied again (issue 33, point 3).
TEST_CASE("an event at or below the revision the line holds is not applied again",
          "[leader-tracker]") {
  LeaderTracker t;
  t.reset({candidate("e/own", 10, 10, "v")}, 10);
  t.apply("e", {{true, {"e/own", "", 0, 12, 0}}});
  CHECK(t.find("e/own") == nullptr);
  t.apply("e", {{false, candidate("e/own", 10, 10, "v")}});  // the old PUT, delivered again
  CHECK(t.find("e/own") == nullptr);
  CHECK(t.first() == nullptr);
}

// The same batches as a campaign's view: its key deleted at 12 and its PUT at 10 seen again must
// not make it first (a watch-decided win would crown a key etcd deleted).
TEST_CASE("a repeated PUT of a deleted own key does not win the campaign", "[leader-tracker]") {
  using election::detail::CampaignEngine;
  LeaderTracker t;
  t.reset({candidate("e/own", 10, 10, "v")}, 10);
  CampaignEngine engine({std::chrono::milliseconds(0), std::chrono::seconds(5),
                         std::chrono::milliseconds(500)});
  REQUIRE(engine.start(1).what == CampaignEngine::Do::enter);
  REQUIRE(engine.entered(10, 10).what == CampaignEngine::Do::wait);
  t.apply("e", {{true, {"e/own", "", 0, 12, 0}}});
  t.apply("e", {{false, candidate("e/own", 10, 10, "v")}});
  CampaignEngine::View view;
  view.synced = true;
  view.revision = 12;
  if (const auto* first = t.first()) view.first = first->create_revision;
  if (const auto* own = t.find("e/own")) {
    view.own = own->create_revision;
    view.own_lease = own->lease;
  }
  view.vacancy_signed = true;
  CHECK(engine.viewed(view, true).what != CampaignEngine::Do::lead);
}

TEST_CASE("a batch that goes back in revisions is refused whole and said to be stale",
          "[leader-tracker]") {
  LeaderTracker t;
  t.reset({candidate("e/a", 5, 5, "a")}, 10);
  CHECK(t.revision() == 10);
  // One Txn's changes share a revision: a signed resignation deletes and signs at 11.
  auto signed_out = t.apply("e", {{true, {"e/a", "", 0, 11, 0}},
                                  {false, {std::string("e0\0" "1", 4), "5", 11, 11, 1}}});
  CHECK_FALSE(signed_out.stale);
  CHECK(t.revision() == 11);
  auto put = t.apply("e", {{false, candidate("e/b", 12, 12, "b")}});
  CHECK_FALSE(put.stale);
  CHECK(t.revision() == 12);
  // A repeat of 12 with something new after it: nothing of the batch is applied.
  auto again = t.apply("e", {{false, candidate("e/b", 12, 12, "b")},
                             {false, candidate("e/c", 13, 13, "c")}});
  CHECK(again.stale);
  CHECK(again.events.empty());
  CHECK(t.find("e/c") == nullptr);
  CHECK(t.revision() == 12);
  // Out of order inside one batch.
  auto backwards = t.apply("e", {{false, candidate("e/d", 15, 15, "d")},
                                 {false, candidate("e/c", 14, 14, "c")}});
  CHECK(backwards.stale);
  CHECK(t.find("e/d") == nullptr);
}
