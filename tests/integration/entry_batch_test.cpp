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
#include "base/keys.hpp"
#include "engine/entry_batcher.hpp"
#include "transport/client_core.hpp"
#include "transport/kv.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
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

// A Client lets so many campaigns at a time on their way into line
// (ClientCore::campaigns_entering); the rest wait their turn before anything of them is built.

TEST_CASE(
    "campaigns beyond the entry gate's share wait their turn, and stopped there they end at once",
    "[session][batch]") {
  // etcd of its own, frozen while the campaigns are on their way: the first ones cannot reach
  // their lines, so the last ones stay at the gate until they are stopped there.
  const auto dir =
      std::filesystem::path(ELECTION_TEST_WORK_DIR) / ("batch-gate-" + std::to_string(::getpid()));
  auto etcd = election::test::EtcdCluster::start(dir, 1);
  run(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        auto options = options_for(etcd.endpoints());
        options.request_timeout = 10s;  // the freeze below costs no request its deadline
        election::Client client(ex, options);
        Session session(client, {.ttl = 10s});
        co_await session.start();
        auto& gate = election::detail::access::core(client)->entry_gate();
        const auto base = unique_name("batch-gate");
        // The last `stopped` of them are stopped at the gate: a third resigned, a third
        // cancelled, a third destroyed.
        constexpr int stopped = 30;
        const int n = static_cast<int>(election::detail::ClientCore::campaigns_entering) + stopped;
        std::vector<std::unique_ptr<Participant>> ps;
        for (int i = 0; i < n; ++i)
          ps.push_back(std::make_unique<Participant>(session, base + "/" + std::to_string(i), "v"));
        std::vector<std::optional<boost::system::error_code>> ended(n);
        std::vector<asio::cancellation_signal> cancel(n);
        const auto all_ended = [&](int from, int to) {
          for (int i = from; i < to; ++i)
            if (!ended[i]) return false;
          return true;
        };
        {
          election::test::Frozen frozen(etcd.pid(0));
          for (int i = 0; i < n; ++i)
            ps[i]->async_campaign(asio::bind_cancellation_slot(
                cancel[i].slot(),
                [&ended, i](boost::system::error_code ec, election::LeaderKey) { ended[i] = ec; }));
          // Every campaign reaches the gate within a few turns of the executor.
          for (int turn = 0; turn < 1000 && gate.waiting() < stopped; ++turn)
            co_await asio::post(ex, asio::use_awaitable);
          REQUIRE(gate.waiting() == static_cast<std::size_t>(stopped));
          REQUIRE(gate.in_flight() == election::detail::ClientCore::campaigns_entering);
          for (int i = n - stopped; i < n; ++i) {
            const int kind = (i - (n - stopped)) % 3;
            if (kind == 0)
              asio::co_spawn(ex, ps[i]->resign(), asio::detached);
            else if (kind == 1)
              cancel[i].emit(asio::cancellation_type::terminal);
            else
              ps[i].reset();
          }
          // Ended while etcd is still frozen: nothing of them had gone to etcd to wait for.
          co_await require_within([&] { return all_ended(n - stopped, n); }, 1s,
                                  "the campaigns stopped at the gate to end");
          CHECK(gate.waiting() == 0);
          CHECK_FALSE(all_ended(0, 1));  // the first still waits for etcd
        }
        for (int i = n - stopped; i < n; ++i) {
          INFO("campaign " << i << ": " << ended[i]->message());
          if ((i - (n - stopped)) % 3 == 0)
            CHECK(*ended[i] == election::errc::resigned);
          else
            CHECK(*ended[i] == asio::error::operation_aborted);
        }
        co_await require_within([&] { return all_ended(0, n - stopped); }, 30s,
                                "every other campaign to end");
        for (int i = 0; i < n - stopped; ++i) {
          INFO("campaign " << i << ": " << ended[i]->message());
          CHECK(!*ended[i]);
        }
        CHECK(gate.in_flight() == 0);
        // Nothing of the stopped ones is in etcd.
        auto core = election::detail::access::core(client);
        for (int i = n - stopped; i < n; ++i) {
          const auto name = base + "/" + std::to_string(i) + "/";
          auto reply =
              co_await election::detail::range(*core, name, election::detail::prefix_end(name));
          INFO(name);
          CHECK(reply.kvs_size() == 0);
        }
        for (auto& p : ps)
          if (p) co_await p->resign();
      },
      60s);
}

TEST_CASE("more campaigns waiting in line than the entry gate lets in do not block a new one",
          "[session][batch]") {
  // etcd of its own: two thousand keys and their resignations stay off the shared one.
  const auto dir = std::filesystem::path(ELECTION_TEST_WORK_DIR) /
                   ("batch-behind-" + std::to_string(::getpid()));
  auto etcd = election::test::EtcdCluster::start(dir, 1);
  run(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        // One Client leads every election; the other's candidates wait behind them, more of them
        // than its gate lets on their way into line at once. A turn is given on in line, not at a
        // win: a new campaign of that Client still goes in, and leads its free election.
        election::Client leaders(ex, options_for(etcd.endpoints()));
        election::Client waiting(ex, options_for(etcd.endpoints()));
        Session lead_session(leaders, {.ttl = 10s});
        Session wait_session(waiting, {.ttl = 10s});
        co_await lead_session.start();
        co_await wait_session.start();
        const auto base = unique_name("batch-behind");
        const int n = static_cast<int>(election::detail::ClientCore::campaigns_entering) + 8;
        std::vector<std::unique_ptr<Participant>> first, behind;
        for (int i = 0; i < n; ++i) {
          first.push_back(
              std::make_unique<Participant>(lead_session, base + "/" + std::to_string(i), "a"));
          behind.push_back(
              std::make_unique<Participant>(wait_session, base + "/" + std::to_string(i), "b"));
        }
        Wins led, overtook;
        campaign_all(ex, first, led);
        co_await require_within([&] { return led.won + led.failed == n; }, 30s, "every leader");
        INFO(led.failure);
        REQUIRE(led.won == n);
        campaign_all(ex, behind, overtook);
        auto& gate = election::detail::access::core(waiting)->entry_gate();
        co_await require_within([&] { return gate.in_flight() == 0 && gate.waiting() == 0; }, 30s,
                                "every candidate in line");
        Participant fresh(wait_session, base + "-free", "c");
        Wins free;
        asio::co_spawn(ex, campaign_into(fresh, free), asio::detached);
        co_await require_within([&] { return free.won + free.failed == 1; }, 10s,
                                "the new campaign");
        INFO(free.failure);
        CHECK(free.won == 1);
        CHECK(overtook.won + overtook.failed == 0);  // all still wait in line
        co_await fresh.resign();
        for (auto& p : behind) co_await p->resign();
        for (auto& p : first) co_await p->resign();
      },
      90s);
}
