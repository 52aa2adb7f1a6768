// The API's edges: calls cut short, calls that overlap on one object, input that could wedge an
// election, and values as large as the library accepts. Each test here is a way a careful user
// could break the safety promise (no phantom leader, no crash, no wedged election).
#include "api/access.hpp"
#include "chaos/proxy.hpp"
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"
#include "transport/client_core.hpp"
#include "transport/kv.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <catch2/catch.hpp>

#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using boost::system::system_error;
using election::errc;
using election::Participant;
using election::test::error_of;
using election::test::fixture_options;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using election::test::ttl;
using election::test::wait_until;
using Clock = std::chrono::steady_clock;

namespace {

std::filesystem::path work_path(const std::string& name) {
  auto dir = std::filesystem::path(ELECTION_TEST_WORK_DIR);
  std::filesystem::create_directories(dir);
  return dir / (name + "-" + std::to_string(::getpid()));
}

election::test::EtcdCluster private_etcd(const std::string& name) {
  return election::test::EtcdCluster::start(work_path(name), 1);
}

asio::awaitable<std::vector<mvccpb::KeyValue>> candidates(election::Client& client,
                                                          const std::string& name) {
  auto reply = co_await election::detail::range(*election::detail::access::core(client), name + "/",
                                                election::detail::prefix_end(name + "/"));
  co_return std::vector<mvccpb::KeyValue>(reply.kvs().begin(), reply.kvs().end());
}

// The TTL etcd has left for a lease: -1 once it is gone.
asio::awaitable<std::int64_t> remaining_ttl(election::Client& client, std::int64_t lease) {
  auto& core = *election::detail::access::core(client);
  etcdserverpb::LeaseTimeToLiveRequest request;
  request.set_id(lease);
  auto reply =
      co_await core.call("lease time-to-live", core.lease().async(),
                         &etcdserverpb::Lease::Stub::async::LeaseTimeToLive, std::move(request));
  co_return reply.ttl();
}

template <class F>
asio::awaitable<std::pair<error_code, std::string>> failure_of(F f) {
  try {
    co_await f();
  } catch (const system_error& e) {
    co_return std::pair{e.code(), std::string(e.what())};
  }
  co_return std::pair{error_code{}, std::string()};
}

asio::awaitable<void> timer_for(Clock::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

// A campaign run in the background, its outcome kept.
struct Background {
  std::optional<election::LeaderKey> key;
  std::optional<error_code> error;
  bool done() const { return key.has_value() || error.has_value(); }
};

asio::awaitable<void> campaign_into(Participant& p, Background& out) {
  try {
    out.key = co_await p.campaign();
  } catch (const system_error& e) {
    out.error = e.code();
  }
}

void campaign_in_background(asio::any_io_executor executor, Participant& p, Background& out) {
  asio::co_spawn(executor, campaign_into(p, out), asio::detached);
}

}  // namespace

// --- 1. whatever ends a campaign or a term withdraws it ------------------------------------

TEST_CASE("a resign cut short by a timer still withdraws: the lease is revoked once etcd answers",
          "[hardening][resign]") {
  auto etcd = private_etcd("resign-cut");
  run(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        election::Client ca(ex, election::test::options_for(etcd.endpoints()));
        election::Client cb(ex, election::test::options_for(etcd.endpoints()));
        const auto name = election::test::unique_name("resign-cut");
        Participant a(ca, name, "a", ttl(10s));
        Participant b(cb, name, "b", ttl(10s));
        const auto key = co_await a.campaign();
        Background next;
        campaign_in_background(ex, b, next);
        co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
        co_await sleep_for(300ms);
        {
          election::test::Frozen frozen(etcd.pid(0));
          auto cut = co_await election::first_of(a.resign(), timer_for(300ms));
          CHECK(cut.index() == 1);  // etcd is frozen: the timer wins
          CHECK_FALSE(a.is_leader());
          co_await sleep_for(700ms);
        }
        // a's TTL is 10 s: only its withdrawal after the thaw lets b lead this soon (the signed
        // resignation deletes the key, then the revocation takes the lease).
        co_await require_within([&] { return next.done(); }, 3s,
                                "b to lead once etcd answers a's withdrawal");
        REQUIRE(next.key);
        std::int64_t left = 0;
        for (int i = 0; i < 100 && left != -1; ++i) {
          left = co_await remaining_ttl(cb, key.lease);
          if (left != -1) co_await sleep_for(20ms);
        }
        CHECK(left == -1);  // revoked, within two seconds of the thaw
        co_await b.resign();
      },
      40s);
}

TEST_CASE("a term ended by the deletion of its key revokes its lease", "[hardening][term]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto name = election::test::unique_name("term-deleted");
    Participant p(client, name, "a", ttl(10s));
    const auto key = co_await p.campaign();
    auto& core = *election::detail::access::core(client);
    etcdserverpb::DeleteRangeRequest del;
    del.set_key(key.key);
    co_await core.call("delete", core.kv().async(), &etcdserverpb::KV::Stub::async::DeleteRange,
                       std::move(del));
    const auto reason = co_await p.keep_alive();
    CHECK(reason == errc::key_deleted);
    // No campaign or term owns the lease any more: it must not be kept alive.
    std::int64_t left = 0;
    const auto end = Clock::now() + 3s;
    while (Clock::now() < end && (left = co_await remaining_ttl(client, key.lease)) != -1)
      co_await sleep_for(100ms);
    CHECK(left == -1);
  });
}

// --- 2. overlapping calls on one Participant or Observer -----------------------------------

TEST_CASE("resign() during the takeover delay withdraws the campaign: it throws resigned",
          "[hardening][overlap]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto name = election::test::unique_name("resign-settling");
    auto options = ttl(5s);
    options.takeover_delay = 1500ms;
    Participant p(client, name, "a", options);
    Background campaign;
    campaign_in_background(ex, p, campaign);
    co_await require_within([&] { return p.lease_id().has_value(); }, 5s, "a lease");
    co_await sleep_for(500ms);  // alone in line: first at once, then the delay
    REQUIRE_FALSE(campaign.done());
    co_await p.resign();
    co_await require_within([&] { return campaign.done(); }, 2s, "the campaign to end");
    CHECK_FALSE(campaign.key);
    REQUIRE(campaign.error);
    CHECK(*campaign.error == errc::resigned);
    CHECK_FALSE(p.is_leader());
    const auto left = co_await candidates(client, name);
    CHECK(left.empty());
  });
}

TEST_CASE("resign() while waiting in line withdraws the candidate: its campaign throws resigned",
          "[hardening][overlap]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto name = election::test::unique_name("resign-in-line");
    Participant a(client, name, "a", ttl(5s));
    Participant b(client, name, "b", ttl(5s));
    co_await a.campaign();
    Background campaign;
    campaign_in_background(ex, b, campaign);
    co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
    co_await sleep_for(300ms);
    co_await b.resign();
    co_await require_within([&] { return campaign.done(); }, 2s, "b's campaign to end");
    REQUIRE(campaign.error);
    CHECK(*campaign.error == errc::resigned);
    const auto left = co_await candidates(client, name);
    REQUIRE(left.size() == 1);
    CHECK(left[0].value() == "a");
    CHECK(a.is_leader());
    co_await a.resign();
  });
}

TEST_CASE(
    "while a campaign runs leader-only calls fail with not_leader and a second campaign "
    "with invalid_argument",
    "[hardening][overlap]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto name = election::test::unique_name("calls-in-line");
    Participant a(client, name, "a", ttl(5s));
    Participant b(client, name, "b", ttl(5s));
    co_await a.campaign();
    Background campaign;
    campaign_in_background(ex, b, campaign);
    co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
    const auto proclaim = co_await error_of([&] { return b.proclaim("b2"); });
    CHECK(proclaim == errc::not_leader);
    const auto put = co_await error_of([&] { return b.put_if_leader(name + "-data", "x"); });
    CHECK(put == errc::not_leader);
    const auto keep = co_await error_of([&] { return b.keep_alive(); });
    CHECK(keep == errc::not_leader);
    const auto again = co_await failure_of([&] { return b.campaign(); });
    CHECK(again.first == errc::invalid_argument);
    CHECK_THAT(again.second, Catch::Contains("campaign"));
    auto leader = co_await b.leader();  // a read: fine at any time
    REQUIRE(leader);
    CHECK(leader->value == "a");
    CHECK_FALSE(campaign.done());
    co_await a.resign();
    co_await require_within([&] { return campaign.done(); }, 2s, "b to lead");
    CHECK(campaign.key);
    co_await b.resign();
  });
}

TEST_CASE("two proclaims at once: the second is refused with invalid_argument",
          "[hardening][overlap]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    Participant p(client, election::test::unique_name("proclaims"), "v0", ttl(5s));
    co_await p.campaign();
    std::optional<error_code> first;
    auto proclaim_first = [&]() -> asio::awaitable<void> {
      first = co_await error_of([&] { return p.proclaim("v1"); });
    };
    asio::co_spawn(ex, proclaim_first(), asio::detached);
    const auto second = co_await failure_of([&] { return p.proclaim("v2"); });
    CHECK(second.first == errc::invalid_argument);
    CHECK_THAT(second.second, Catch::Contains("proclaim"));
    co_await require_within([&] { return first.has_value(); }, 5s, "the first proclaim");
    CHECK(*first == error_code{});
    CHECK(p.value() == "v1");
    auto leader = co_await p.leader();
    REQUIRE(leader);
    CHECK(leader->value == "v1");
    co_await p.resign();
  });
}

TEST_CASE("fenced writes at once all land and resign while they fly fences the rest",
          "[hardening][overlap]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto name = election::test::unique_name("puts");
    Participant p(client, name, "a", ttl(5s));
    co_await p.campaign();
    int landed = 0;
    for (int i = 0; i < 5; ++i) {
      auto put = [&, i]() -> asio::awaitable<void> {
        co_await p.put_if_leader(name + "-data-" + std::to_string(i), "x");
        ++landed;
      };
      asio::co_spawn(ex, put(), asio::detached);
    }
    co_await require_within([&] { return landed == 5; }, 5s, "five fenced writes");
    // Both resigns finish, and the key is gone; a write after them is refused at once.
    bool first_done = false;
    auto resign_first = [&]() -> asio::awaitable<void> {
      co_await p.resign();
      first_done = true;
    };
    asio::co_spawn(ex, resign_first(), asio::detached);
    co_await p.resign();
    co_await require_within([&] { return first_done; }, 5s, "the first resign");
    const auto late = co_await error_of([&] { return p.put_if_leader(name + "-late", "x"); });
    CHECK(late == errc::not_leader);
    const auto left = co_await candidates(client, name);
    CHECK(left.empty());
  });
}

TEST_CASE("keep_alive() waiting when resign() is called returns resigned", "[hardening][overlap]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    Participant p(client, election::test::unique_name("keep-resign"), "a", ttl(5s));
    co_await p.campaign();
    std::optional<error_code> reason;
    auto wait = [&]() -> asio::awaitable<void> { reason = co_await p.keep_alive(); };
    asio::co_spawn(ex, wait(), asio::detached);
    co_await sleep_for(100ms);
    co_await p.resign();
    co_await require_within([&] { return reason.has_value(); }, 1s, "keep_alive to return");
    CHECK(*reason == errc::resigned);
  });
}

TEST_CASE("destroying a participant while it waits in line ends its campaign and its key",
          "[hardening][overlap]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto name = election::test::unique_name("destroy-in-line");
    Participant a(client, name, "a", ttl(5s));
    co_await a.campaign();
    Background campaign;
    {
      Participant b(client, name, "b", ttl(5s));
      campaign_in_background(ex, b, campaign);
      co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
      co_await sleep_for(200ms);
    }
    co_await require_within([&] { return campaign.done(); }, 2s, "b's campaign to end");
    REQUIRE(campaign.error);
    CHECK(*campaign.error == asio::error::operation_aborted);
    std::vector<mvccpb::KeyValue> left;
    const auto end = Clock::now() + 2s;
    while (Clock::now() < end && (left = co_await candidates(client, name)).size() != 1)
      co_await sleep_for(20ms);
    CHECK(left.size() == 1);
    co_await a.resign();
  });
}

TEST_CASE("destroying the client while a campaign waits ends it with client_closed",
          "[hardening][overlap]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client holder(ex, fixture_options());
    const auto name = election::test::unique_name("client-gone");
    Participant a(holder, name, "a", ttl(5s));
    co_await a.campaign();
    Background campaign;
    std::optional<election::Client> client;
    client.emplace(ex, fixture_options());
    Participant b(*client, name, "b", ttl(5s));
    campaign_in_background(ex, b, campaign);
    co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
    co_await sleep_for(200ms);
    client.reset();
    co_await require_within([&] { return campaign.done(); }, 2s, "b's campaign to end");
    REQUIRE(campaign.error);
    CHECK(*campaign.error == errc::client_closed);
    CHECK_FALSE(b.is_leader());
    co_await a.resign();
  });
}

TEST_CASE("a leader destroyed together with its client hands over at once and not after its TTL",
          "[hardening][overlap]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client cb(ex, fixture_options());
    const auto name = election::test::unique_name("scope-exit");
    Participant b(cb, name, "b", ttl(10s));
    Background next;
    {
      election::Client ca(ex, fixture_options());
      Participant a(ca, name, "a", ttl(10s));
      co_await a.campaign();
      campaign_in_background(ex, b, next);
      co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
      co_await sleep_for(200ms);
      // Scope exit: ~Participant, then ~Client, in one step.
    }
    co_await require_within([&] { return next.done(); }, 2s, "b to lead within 2 s (TTL 10 s)");
    CHECK(next.key);
    co_await b.resign();
  });
}

TEST_CASE("two next() at once on one observer: the second is refused with invalid_argument",
          "[hardening][overlap]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto name = election::test::unique_name("two-nexts");
    election::Observer observer(client, name);
    Participant a(client, name, "a", ttl(5s));
    const auto initial = co_await observer.next();  // the state now: no leader
    CHECK_FALSE(initial.has_leader());
    std::optional<election::LeaderEvent> first;
    auto wait = [&]() -> asio::awaitable<void> { first = co_await observer.next(); };
    asio::co_spawn(ex, wait(), asio::detached);
    co_await sleep_for(50ms);
    REQUIRE_FALSE(first.has_value());  // nothing has changed: it waits
    const auto second = co_await failure_of([&] { return observer.next(); });
    CHECK(second.first == errc::invalid_argument);
    CHECK_THAT(second.second, Catch::Contains("next"));
    co_await a.campaign();
    co_await require_within([&] { return first.has_value(); }, 5s, "the first next()");
    REQUIRE(first->has_leader());
    CHECK(first->leader->value == "a");
    co_await a.resign();
  });
}

// --- 6. what could wedge an election ----------------------------------------------------

TEST_CASE("a fenced write into the election's own prefix is refused before it is sent",
          "[hardening][input]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto name = election::test::unique_name("own-prefix");
    Participant p(client, name, "a", ttl(5s));
    co_await p.campaign();
    const auto refused = co_await failure_of([&] { return p.put_if_leader(name + "/state", "x"); });
    CHECK(refused.first == errc::invalid_argument);
    CHECK_THAT(refused.second, Catch::Contains(name + "/state"));
    CHECK_THAT(refused.second, Catch::Contains(name + "/"));
    const auto left = co_await candidates(client, name);
    CHECK(left.size() == 1);  // only the leader's own key
    // Beside the prefix is fine.
    const auto revision = co_await p.put_if_leader(name + "-state", "x");
    CHECK(revision > 0);
    co_await p.resign();
  });
}

TEST_CASE("election names that nest are refused on one client", "[hardening][input]") {
  asio::io_context context;
  election::Client client(context.get_executor(), fixture_options());
  const auto base = election::test::unique_name("nest");
  Participant a(client, base, "a");
  auto refused = [&](auto make) {
    try {
      make();
    } catch (const system_error& e) {
      INFO(e.what());
      CHECK(e.code() == errc::invalid_argument);
      CHECK_THAT(std::string(e.what()), Catch::Contains(base));
      return true;
    }
    return false;
  };
  CHECK(refused([&] { election::Observer o(client, base + "/b"); }));
  CHECK(refused([&] { Participant p(client, base + "/b/c", "x"); }));
  {
    Participant below(client, base + "-other/x", "x");  // a sibling name, not nested
    CHECK(refused([&] { election::Observer o(client, base + "-other"); }));
  }
  CHECK_FALSE(refused([&] { Participant same(client, base, "b"); }));  // the same election
  CHECK_FALSE(refused([&] { election::Observer o(client, base); }));
  CHECK_FALSE(refused([&] { Participant sibling(client, base + "-2", "x"); }));
}

TEST_CASE("three candidates with values near the limit: catch-up and restart and compaction",
          "[hardening][values]") {
  auto etcd = private_etcd("large-values");
  run(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        const auto endpoint = etcd.endpoint(0);
        const auto colon = endpoint.rfind(':');
        chaos::Proxy proxy(ex,
                           {asio::ip::make_address(endpoint.substr(0, colon)),
                            static_cast<unsigned short>(std::stoi(endpoint.substr(colon + 1)))});
        election::Client client(ex, election::test::options_for(etcd.endpoints()));
        election::Client watcher(
            ex, election::test::options_for({"127.0.0.1:" + std::to_string(proxy.port())}));
        const auto name = election::test::unique_name("large");
        // 1.4 MiB each, under the library's 1.5 MiB limit; three are over gRPC's default 4 MiB.
        auto big = [](char c) { return std::string(1400 * 1024, c); };
        election::Observer observer(watcher, name);
        const auto start = co_await observer.next();
        CHECK_FALSE(start.has_leader());

        // The observer's link is down while all three enter: its watch catches up in one batch.
        proxy.cut();
        Participant a(client, name, big('a'), ttl(10s));
        Participant b(client, name, big('b'), ttl(10s));
        Participant c(client, name, big('c'), ttl(10s));
        co_await a.campaign();
        Background b_won, c_won;
        campaign_in_background(ex, b, b_won);
        co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
        campaign_in_background(ex, c, c_won);
        co_await require_within([&] { return c.lease_id().has_value(); }, 5s, "c in line");
        co_await sleep_for(300ms);
        proxy.heal();
        auto seen = co_await election::first_of(observer.next(), timer_for(10s));
        REQUIRE(seen.index() == 0);
        REQUIRE(std::get<0>(seen).has_leader());
        CHECK(std::get<0>(seen).leader->value == big('a'));

        // A restart, then a compaction of everything before now: the election is read again.
        etcd.restart_member(0);
        auto& core = *election::detail::access::core(client);
        auto now = co_await election::detail::range(core, name + "/",
                                                    election::detail::prefix_end(name + "/"));
        REQUIRE(now.kvs_size() == 3);
        const auto compact = "ETCDCTL_API=3 etcdctl --endpoints=" + endpoint + " compact " +
                             std::to_string(now.header().revision()) + " >/dev/null";
        REQUIRE(std::system(compact.c_str()) == 0);

        co_await a.resign();
        co_await require_within([&] { return b_won.done(); }, 10s, "b to lead");
        REQUIRE(b_won.key);
        auto second = co_await election::first_of(observer.next(), timer_for(10s));
        REQUIRE(second.index() == 0);
        REQUIRE(std::get<0>(second).has_leader());
        CHECK(std::get<0>(second).leader->value == big('b'));

        co_await b.resign();
        co_await require_within([&] { return c_won.done(); }, 10s, "c to lead");
        REQUIRE(c_won.key);
        auto third = co_await election::first_of(observer.next(), timer_for(10s));
        REQUIRE(third.index() == 0);
        REQUIRE(std::get<0>(third).has_leader());
        CHECK(std::get<0>(third).leader->value == big('c'));
        co_await c.resign();
      },
      90s);
}

// --- 8. a next() cut short loses nothing ------------------------------------------------

TEST_CASE("next() raced against short timers sees every change in order", "[hardening][observer]") {
  run(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        election::Client client(ex, fixture_options());
        election::Client producer_client(ex, fixture_options());
        const auto name = election::test::unique_name("race-next");
        election::Observer observer(client, name);
        const auto initial = co_await observer.next();
        CHECK_FALSE(initial.has_leader());

        // Three candidates take turns; each term proclaims a few values. Every value is new,
        // so every change is one event, and the list of values is etcd's history.
        constexpr int terms = 12, proclaims = 12;
        std::vector<std::string> expected;
        bool produced = false;
        auto produce = [&]() -> asio::awaitable<void> {
          for (int t = 0; t < terms; ++t) {
            Participant p(producer_client, name, "t" + std::to_string(t), ttl(5s));
            co_await p.campaign();
            expected.push_back("t" + std::to_string(t));
            for (int i = 0; i < proclaims; ++i) {
              const auto value = "t" + std::to_string(t) + "-" + std::to_string(i);
              co_await p.proclaim(value);
              expected.push_back(value);
            }
            co_await p.resign();
            expected.push_back("");  // no leader
          }
          produced = true;
        };
        asio::co_spawn(ex, produce(), asio::detached);

        std::vector<std::string> seen;
        std::minstd_rand random(42);
        std::uniform_int_distribution<int> pick(0, 2000);
        const auto end = Clock::now() + 40s;
        while (Clock::now() < end && !(produced && seen.size() >= expected.size())) {
          const auto wait = std::chrono::microseconds(pick(random));
          auto race = co_await election::first_of(observer.next(), timer_for(wait));
          if (race.index() == 0) {
            const auto& e = std::get<0>(race);
            seen.push_back(e.has_leader() ? e.leader->value : "");
          }
        }
        REQUIRE(produced);
        CHECK(seen == expected);
      },
      60s);
}

// --- 9. no use of a Client after it is gone ---------------------------------------------

TEST_CASE("a participant and its client destroyed together while the campaign is in flight",
          "[hardening][lifetime]") {
  std::minstd_rand random(7);
  std::uniform_int_distribution<int> pick(0, 4000);
  const auto name = election::test::unique_name("gone-mid-flight");
  for (int round = 0; round < 40; ++round) {
    const auto delay = std::chrono::microseconds(pick(random));
    run([&]() -> asio::awaitable<void> {
      auto ex = co_await asio::this_coro::executor;
      auto client = std::make_unique<election::Client>(ex, fixture_options());
      auto p = std::make_unique<Participant>(*client, name, "x", ttl(5s));
      Background outcome;
      campaign_in_background(ex, *p, outcome);
      asio::steady_timer wait(ex, delay);
      co_await wait.async_wait(asio::use_awaitable);
      p.reset();
      client.reset();
      co_await require_within([&] { return outcome.done(); }, 5s, "the campaign to end");
    });
  }
}

// --- 4. a suspended host does not lead on -----------------------------------------------

TEST_CASE("after a 30 s suspend with TTL 10 s the leader knows at once that it no longer leads",
          "[hardening][suspend]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    Participant p(client, election::test::unique_name("suspend"), "a", ttl(10s));
    co_await p.campaign();
    REQUIRE(p.is_leader());
    std::optional<error_code> ended;
    auto watch = [&]() -> asio::awaitable<void> { ended = co_await p.keep_alive(); };
    asio::co_spawn(ex, watch(), asio::detached);
    co_await sleep_for(100ms);
    // The host sleeps for 30 s: boot time (what etcd's clock tracks) runs on, CLOCK_MONOTONIC
    // and every steady timer do not. Acted out on the Client's injectable time source.
    election::detail::access::core(client)->time().suspend_for(30s);
    CHECK_FALSE(p.is_leader());  // judged on boot time: at once, before any timer runs
    const auto woke = Clock::now();
    co_await require_within([&] { return ended.has_value(); }, 2s, "keep_alive() to end");
    CHECK(Clock::now() - woke < 300ms);
    CHECK(*ended == errc::lease_deadline_passed);
    const auto late = co_await error_of([&] { return p.put_if_leader("suspend-state", "x"); });
    CHECK(late == errc::not_leader);
  });
}

// --- 12. safe by default on the etcd people run -------------------------------------------

TEST_CASE("the default takeover delay follows etcd's version and a set one always wins",
          "[hardening][takeover-delay]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto version = co_await client.server_version();
    CHECK(version == "3.4.23");  // Debian 12's etcd-server, without the stale-leader fix
    const auto name = election::test::unique_name("delay");
    Participant chosen(client, name, "a", ttl(5s));
    CHECK_FALSE(chosen.takeover_delay());
    const auto start = Clock::now();
    co_await chosen.campaign();
    const auto took = Clock::now() - start;
    REQUIRE(chosen.takeover_delay());
    CHECK(*chosen.takeover_delay() == 200ms);
    CHECK(took >= 200ms);
    co_await chosen.resign();

    auto options = ttl(5s);
    options.takeover_delay = 0ms;
    Participant set(client, name, "b", options);
    co_await set.campaign();
    REQUIRE(set.takeover_delay());
    CHECK(*set.takeover_delay() == 0ms);
    co_await set.resign();
  });
}
