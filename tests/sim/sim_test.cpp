// The simulator's own parts: the simulated etcd must behave as etcd does where the library
// depends on it (shared/etcd-v3-facts.md), or the simulator proves nothing; and a seed must
// replay exactly.
#include "etcd_model.hpp"
#include "world.hpp"

#include <catch2/catch.hpp>

using namespace election::sim;
using namespace std::chrono_literals;

namespace {

const Time t0 = Time(1000s);

Txn create_if_absent(const std::string& key, const std::string& value, std::int64_t lease) {
  Txn txn;
  txn.compares.push_back({key, 0});
  txn.success.push_back({Txn::Op::Kind::put, key, value, lease});
  txn.failure.push_back({Txn::Op::Kind::range, key, {}, 0});
  return txn;
}

}  // namespace

TEST_CASE("a guarded Txn creates a key once, with revisions as etcd counts them", "[sim][etcd]") {
  Store store;
  const auto [lease, ttl] = store.grant(5s, t0);
  CHECK(ttl == 5s);
  CHECK(store.revision() == 1);  // a grant is no key change
  auto first = store.txn(create_if_absent("e/a", "x", lease));
  CHECK(first.succeeded);
  CHECK(first.revision == 2);
  auto again = store.txn(create_if_absent("e/a", "y", lease));
  CHECK_FALSE(again.succeeded);
  CHECK(again.revision == 2);  // a read-only branch moves no revision
  REQUIRE(again.ranges.size() == 1);
  REQUIRE(again.ranges[0].size() == 1);
  CHECK(again.ranges[0][0].create_revision == 2);
  CHECK(again.ranges[0][0].value == "x");
  // A second put keeps the create revision and moves the mod revision.
  Txn update;
  update.compares.push_back({"e/a", 2});
  update.success.push_back({Txn::Op::Kind::put, "e/a", "z", lease});
  auto updated = store.txn(update);
  CHECK(updated.succeeded);
  CHECK(store.find("e/a")->create_revision == 2);
  CHECK(store.find("e/a")->mod_revision == 3);
  CHECK(store.find("e/a")->version == 2);
}

TEST_CASE("a put on a lease etcd does not have fails the whole Txn", "[sim][etcd]") {
  Store store;
  auto result = store.txn(create_if_absent("e/a", "x", 12345));
  CHECK(result.lease_not_found);
  CHECK_FALSE(store.find("e/a"));
  CHECK(store.revision() == 1);
}

TEST_CASE("a delete and a put in one Txn share one revision", "[sim][etcd]") {
  Store store;
  const auto lease = store.grant(5s, t0).first;
  store.txn(create_if_absent("e/a", "x", lease));
  Txn resign;
  resign.compares.push_back({"e/a", 2});
  resign.success.push_back({Txn::Op::Kind::del, "e/a", {}, 0});
  resign.success.push_back({Txn::Op::Kind::put, std::string("e0\0a", 4), "2", lease});
  CHECK(store.txn(resign).succeeded);
  CHECK(store.revision() == 3);
  auto events = store.events("e/", std::string("e0\1", 3), 3);
  REQUIRE(events);
  REQUIRE(events->size() == 2);
  CHECK((*events)[0].deleted);
  CHECK((*events)[0].kv.mod_revision == 3);
  CHECK((*events)[1].kv.mod_revision == 3);
  CHECK(store.removal("e/a", 2).cause == Cause::owner);
}

TEST_CASE("leases: the minimum TTL, renewal, expiry, and a refused late renewal", "[sim][etcd]") {
  Store store;
  const auto [lease, ttl] = store.grant(1s, t0);
  CHECK(ttl == 2s);  // raised to etcd's minimum
  store.txn(create_if_absent("e/a", "x", lease));
  CHECK(store.renew(lease, t0 + 1s) == 2s);
  CHECK(store.expire(t0 + 2500ms).empty());  // renewed at 1 s: lives to 3 s
  // Past its expiry but not yet revoked: etcd's Renew refuses it (TTL 0).
  CHECK(store.renew(lease, t0 + 3s) == 0s);
  CHECK(store.expire(t0 + 3s) == std::vector<std::int64_t>{lease});
  CHECK_FALSE(store.find("e/a"));
  CHECK(store.removal("e/a", 2).cause == Cause::expiry);
  CHECK(store.renew(lease, t0 + 4s) == 0s);
}

TEST_CASE("a new raft leader gives every lease its TTL again plus the election timeout",
          "[sim][etcd]") {
  Store store;
  const auto lease = store.grant(3s, t0).first;
  store.promote(t0 + 2s, 1s);
  CHECK(store.lease(lease)->expiry == t0 + 6s);
}

TEST_CASE("revoking a lease deletes its keys in one revision", "[sim][etcd]") {
  Store store;
  const auto lease = store.grant(5s, t0).first;
  store.txn(create_if_absent("e/a", "x", lease));
  store.txn(create_if_absent("e/b", "y", lease));
  CHECK(store.revoke(lease, Cause::operator_revoke));
  CHECK(store.revision() == 4);
  CHECK(store.range("e/", "e0").empty());
  CHECK(store.removal("e/b", 3).cause == Cause::operator_revoke);
  CHECK_FALSE(store.revoke(lease, Cause::owner));  // already gone
}

TEST_CASE("a watch from a compacted revision is refused, and history stays for the checker",
          "[sim][etcd]") {
  Store store;
  const auto lease = store.grant(5s, t0).first;
  store.txn(create_if_absent("e/a", "x", lease));  // 2
  store.txn(create_if_absent("e/b", "y", lease));  // 3
  store.del("e/a", Cause::operator_delete);        // 4
  store.compact(3);
  CHECK_FALSE(store.events("e/", "e0", 3));
  auto after = store.events("e/", "e0", 4);
  REQUIRE(after);
  CHECK(after->size() == 1);
  // The first in line at each revision, replayed from the whole history.
  CHECK(store.first_at("e/", "e0", 3)->key == "e/a");
  CHECK(store.first_at("e/", "e0", 4)->key == "e/b");
  CHECK_FALSE(store.first_at("e/", "e0", 1));
}

TEST_CASE("a seed replays exactly", "[sim]") {
  Options options;
  options.seed = 42;
  options.duration = 20s;
  options.trace = true;
  const auto a = run(options);
  const auto b = run(options);
  CHECK(a.events == b.events);
  CHECK(a.trace == b.trace);
  CHECK(a.failed == b.failed);
  options.seed = 43;
  CHECK(run(options).trace != a.trace);
}
