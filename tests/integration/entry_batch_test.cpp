// Campaigns started together go to etcd together (src/engine/entry_batcher.hpp), and every election
// keeps its own guarantees: a guard that fails for one election fails that one only; an etcd
// that takes fewer operations per Txn than the batcher asks for is told so and obeyed; two
// candidates of one election never share a create revision.
#include "chaos/proxy.hpp"
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/etcdctl.hpp"
#include "support/http.hpp"
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
#include <sstream>
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

// --- a cancelled entry leaves nothing behind (issue 33, point 4; findings 4 and 8) -----------

namespace {

// Lines of etcd's /metrics, on its client port (loopback).
std::string etcd_metrics(const std::string& endpoint) {
  const auto colon = endpoint.rfind(':');
  const auto port = static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1)));
  auto reply = election::test::http_get(port, "/metrics");
  REQUIRE(reply);
  return reply->body;
}

// The Txns etcd has handled, whatever they answered.
long txns_handled(const std::string& endpoint) {
  std::istringstream lines(etcd_metrics(endpoint));
  long total = 0;
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("grpc_server_handled_total{") ||
        line.find("grpc_method=\"Txn\"") == std::string::npos)
      continue;
    total += std::stol(line.substr(line.rfind(' ') + 1));
  }
  return total;
}

asio::ip::tcp::endpoint tcp_of(const std::string& host_port) {
  return election::test::tcp_endpoint(host_port);
}

}  // namespace

// Schedule A of finding 4: the entry's Txn is applied, its answer comes later than the attempt's
// deadline; the campaign is cancelled meanwhile and its withdrawal deletes the key; the Txn's
// next attempt finds the key absent and creates it again. Before the fix that key stayed on the
// Session's live lease (the batcher skipped an abandoned entry it found "existing").
TEST_CASE("a Session campaign cancelled while its entry is unanswered leaves no key",
          "[session][batch][cancel]") {
  const auto name = unique_name("batch-cancel-phantom");
  run(
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        chaos::Proxy proxy(ex, tcp_of(fixture_options().endpoints.front()));
        election::Client client(ex, election::test::options_via(proxy.port()));
        election::Client observer(ex, fixture_options());
        Session session(client, {.ttl = 10s});
        const auto lease = co_await session.start();
        // Its delay set: no question to etcd about its version before the entry.
        Participant p(session, name, "v", {.takeover_delay = 200ms});

        // Requests reach etcd at once; answers take longer than an attempt (a third of the
        // request timeout while the round trip is not known yet: 1.67 s).
        proxy.set_delays(0ms, 2500ms);
        asio::cancellation_signal cut;
        bool ended = false;
        asio::co_spawn(ex, p.campaign(),
                       asio::bind_cancellation_slot(cut.slot(), [&](std::exception_ptr, auto) {
                         ended = true;
                       }));
        co_await election::test::sleep_for(100ms);  // the entry's Txn applied; no answer yet
        cut.emit(asio::cancellation_type::terminal);
        co_await election::test::sleep_for(4s);
        proxy.set_delays(0ms, 0ms);
        co_await require_within([&] { return ended; }, 10s, "the campaign to end");
        // Once every answer is in, nothing of the campaign is left in line.
        std::vector<std::string> left;
        for (int i = 0; i < 100; ++i) {  // up to 10 s: the request timeout and then some
          left = co_await election::test::keys_of(observer, name);
          if (left.empty()) break;
          co_await election::test::sleep_for(100ms);
        }
        INFO("left in line: " << (left.empty() ? std::string("nothing") : left.front()));
        CHECK(left.empty());
        CHECK(session.lease_id() == lease);  // the lease lives on: a phantom would stay
      },
      40s);
}

// Schedule B of finding 4: the cancelled campaign's entry waits for a request slot (one in
// flight at most, held by a slow read); its withdrawal's delete, which takes no slot, lands
// first; a new campaign at once enters behind it and adopts the key the old entry creates. Before
// the fix the old entry's clean-up then deleted the new campaign's key, which had to enter the
// line again.
TEST_CASE("a campaign started right after a cancelled one keeps the key it entered with",
          "[session][batch][cancel]") {
  const auto name = unique_name("batch-cancel-next");
  run(
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        chaos::Proxy proxy(ex, tcp_of(fixture_options().endpoints.front()));
        auto options = election::test::options_via(proxy.port());
        options.max_requests_in_flight = 1;
        election::Client client(ex, options);
        Session session(client, {.ttl = 10s});
        co_await session.start();
        Participant p(session, name, "v", {.takeover_delay = 200ms});
        int in_line = 0;
        election::detail::access::on_in_line(p, [&] { ++in_line; });

        proxy.set_delays(0ms, 300ms);  // every answer 300 ms late: a request holds its slot
        asio::co_spawn(ex, p.leader(), asio::detached);  // takes the one slot
        co_await election::test::sleep_for(20ms);
        asio::cancellation_signal cut;
        asio::co_spawn(ex, p.campaign(),
                       asio::bind_cancellation_slot(cut.slot(), asio::detached));
        co_await election::test::sleep_for(20ms);  // its entry waits for the slot
        cut.emit(asio::cancellation_type::terminal);
        co_await election::test::sleep_for(1ms);
        std::optional<election::LeaderKey> won;
        asio::co_spawn(
            ex, [&]() -> asio::awaitable<void> { won = co_await p.campaign(); }, asio::detached);
        co_await require_within([&] { return won.has_value(); }, 15s, "the new campaign to win");
        proxy.set_delays(0ms, 0ms);
        co_await election::test::sleep_for(1s);  // anything left of the old entry lands
        CHECK(in_line == 1);  // entered once: its key was never taken from under it
        CHECK(p.is_leader());
        co_await p.resign();
      },
      30s);
}

// Finding 8: a Session lease etcd no longer has fails every entry of a batch alike ("requested
// lease not found"); the batch is not split in halves down to single entries for it.
TEST_CASE("a batch that fails for its shared lease is not split: one Txn, every entry told",
          "[session][batch][cancel]") {
  const auto dir = std::filesystem::path(ELECTION_TEST_WORK_DIR) /
                   ("batch-dead-lease-" + std::to_string(::getpid()));
  auto etcd = election::test::EtcdCluster::start(dir, 1);
  const auto endpoint = etcd.endpoint(0);
  long txns = 0;
  bool revoked = false;
  Wins wins;
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, election::test::options_at(endpoint));
        Session session(client, {.ttl = 10s});
        const auto lease = co_await session.start();
        const auto base = unique_name("batch-dead-lease");
        std::vector<std::unique_ptr<Participant>> ps;
        for (int i = 0; i < 64; ++i)
          ps.push_back(std::make_unique<Participant>(session, base + "/" + std::to_string(i), "v"));
        // Revoked behind the session's back: its keep-alive hears of it at the next renewal,
        // seconds from now.
        const auto revoke = "lease revoke " + election::lease_hex(lease);
        revoked = election::test::etcdctl(endpoint, revoke) == 0;
        const auto before = txns_handled(endpoint);
        campaign_all(co_await asio::this_coro::executor, ps, wins);
        co_await require_within([&] { return wins.won + wins.failed == 64; }, 20s,
                                "every campaign to end");
        txns = txns_handled(endpoint) - before;
      },
      40s);
  REQUIRE(revoked);
  INFO(txns << " Txns for 64 entries; " << wins.failure);
  CHECK(wins.failed == 64);
  CHECK(txns <= 8);
}
