// Campaigns started together go to etcd together (src/engine/entry_batcher.hpp), and every election
// keeps its own guarantees: a guard that fails for one election fails that one only; an etcd
// that takes fewer operations per Txn than the batcher asks for is told so and obeyed; two
// candidates of one election never share a create revision.
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"

#include "api/access.hpp"
#include "engine/entry_batcher.hpp"
#include "transport/client_core.hpp"
#include "transport/kv.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using election::Participant;
using election::Session;
using election::test::fixture_options;
using election::test::options_for;
using election::test::require_within;
using election::test::run;
using election::test::unique_name;

namespace {

// Campaigns on every participant at once; counts the wins and keeps the first failure.
struct Wins {
  int won = 0;
  int failed = 0;
  std::string failure;
};

asio::awaitable<void> campaign_into(Participant& p, Wins& wins) {
  try {
    co_await p.campaign();
    ++wins.won;
  } catch (const std::exception& e) {
    ++wins.failed;
    if (wins.failure.empty()) wins.failure = e.what();
  }
}

void campaign_all(asio::any_io_executor ex, std::vector<std::unique_ptr<Participant>>& ps,
                  Wins& wins) {
  for (auto& p : ps) asio::co_spawn(ex, campaign_into(*p, wins), asio::detached);
}

asio::awaitable<mvccpb::KeyValue> key_of(election::Client& client, const std::string& key) {
  auto reply = co_await election::detail::range(*election::detail::access::core(client), key);
  REQUIRE(reply.kvs_size() == 1);
  co_return reply.kvs(0);
}

}  // namespace

TEST_CASE("campaigns started together on a Session: one election's failed guard fails that one",
          "[session][batch]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    Session session(client, {.ttl = 5s});
    const auto lease = co_await session.start();
    const auto base = unique_name("batch-guard");
    // The second election already holds this session's key, put by someone else without the
    // lease and with another value: its guard (the key absent) fails in the shared Txn.
    const auto stale = base + "-1/" + election::lease_hex(lease);
    {
      auto& core = *election::detail::access::core(client);
      etcdserverpb::PutRequest put;
      put.set_key(stale);
      put.set_value("stale");
      co_await core.call("put", core.kv().async(), &etcdserverpb::KV::Stub::async::Put,
                         std::move(put));
    }
    std::vector<std::unique_ptr<Participant>> ps;
    for (int i = 0; i < 3; ++i)
      ps.push_back(std::make_unique<Participant>(session, base + "-" + std::to_string(i), "v"));
    Wins wins;
    campaign_all(co_await asio::this_coro::executor, ps, wins);
    co_await require_within([&] { return wins.won + wins.failed == 3; }, 10s, "every campaign");
    INFO(wins.failure);
    CHECK(wins.won == 3);
    // The stale key is this campaign's now, in its place: the session's lease, its value.
    const auto kept = co_await key_of(client, stale);
    CHECK(kept.value() == "v");
    CHECK(kept.lease() == lease);
    for (auto& p : ps) co_await p->resign();
  });
}

TEST_CASE("an etcd that takes fewer operations per Txn is obeyed: every campaign leads",
          "[session][batch]") {
  const auto dir = std::filesystem::path(ELECTION_TEST_WORK_DIR) /
                   ("batch-max-ops-" + std::to_string(::getpid()));
  ::setenv("ETCD_FIXTURE_EXTRA_ARGS", "--max-txn-ops 8", 1);
  auto etcd = election::test::EtcdCluster::start(dir, 1);
  ::unsetenv("ETCD_FIXTURE_EXTRA_ARGS");
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd.endpoints()));
        Session session(client, {.ttl = 5s});
        co_await session.start();
        const auto base = unique_name("batch-ops");
        std::vector<std::unique_ptr<Participant>> ps;
        for (int i = 0; i < 50; ++i)
          ps.push_back(std::make_unique<Participant>(session, base + "/" + std::to_string(i), "v"));
        Wins wins;
        campaign_all(co_await asio::this_coro::executor, ps, wins);
        co_await require_within([&] { return wins.won + wins.failed == 50; }, 20s,
                                "every campaign");
        INFO(wins.failure);
        CHECK(wins.won == 50);
        // Two operations per branch per entry: 4 entries at most under --max-txn-ops 8.
        const auto batcher =
            election::detail::EntryBatcher::of(election::detail::access::core(client));
        CHECK(batcher->entries_per_txn() <= 4);
        for (auto& p : ps) CHECK(p->is_leader());
      },
      40s);
}

TEST_CASE("two candidates of one election started together never share a create revision",
          "[session][batch]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = unique_name("batch-same");
    // Two Sessions on one Client: two leases, two keys in one election, entered at once.
    Session one(client, {.ttl = 5s});
    Session two(client, {.ttl = 5s});
    co_await one.start();
    co_await two.start();
    std::vector<std::unique_ptr<Participant>> ps;
    ps.push_back(std::make_unique<Participant>(one, name, "a"));
    ps.push_back(std::make_unique<Participant>(two, name, "b"));
    Wins wins;
    campaign_all(co_await asio::this_coro::executor, ps, wins);
    co_await require_within([&] { return wins.won == 1; }, 5s, "one of them to lead");
    const auto a = co_await key_of(client, election::detail::candidate_key(name, *one.lease_id()));
    const auto b = co_await key_of(client, election::detail::candidate_key(name, *two.lease_id()));
    CHECK(a.create_revision() != b.create_revision());
    CHECK(ps[0]->is_leader() + ps[1]->is_leader() == 1);  // and so one leader, not two
    const auto first = a.create_revision() < b.create_revision() ? 0 : 1;
    CHECK(ps[first]->is_leader());
    co_await ps[first]->resign();
    co_await require_within([&] { return wins.won == 2; }, 5s, "the other to lead next");
    co_await ps[1 - first]->resign();
  });
}
