// Participant against a real etcd: the points of "the election, done right".
#include "api/access.hpp"
#include "election/election.hpp"
#include "engine/election_feed.hpp"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/process.hpp"
#include "support/run.hpp"
#include "transport/client_core.hpp"
#include "transport/kv.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <catch2/catch.hpp>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;
using election::errc;
using election::Participant;
using election::test::error_of;
using election::test::fixture_options;
using election::test::options_for;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using election::test::ttl;
using election::test::wait_until;
using Clock = election::lease_clock;  // the clock deadlines are on

namespace {

std::filesystem::path work_path(const std::string& name) {
  auto dir = std::filesystem::path(ELECTION_TEST_WORK_DIR);
  std::filesystem::create_directories(dir);
  return dir / (name + "-" + std::to_string(::getpid()));
}

// Keys under the election's prefix, as etcd has them now.
asio::awaitable<std::vector<mvccpb::KeyValue>> candidates(election::Client& client,
                                                          const std::string& name) {
  auto reply = co_await election::detail::range(*election::detail::access::core(client), name + "/",
                                                election::detail::prefix_end(name + "/"));
  co_return std::vector<mvccpb::KeyValue>(reply.kvs().begin(), reply.kvs().end());
}

void etcdctl(const std::vector<std::string>& endpoints, const std::string& args) {
  const auto command =
      "ETCDCTL_API=3 etcdctl --endpoints=" + endpoints.front() + " " + args + " >/dev/null";
  REQUIRE(std::system(command.c_str()) == 0);
}

}  // namespace

TEST_CASE("campaign returns the leader key and resign ends leadership", "[participant]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("basic");
    Participant p(client, name, "node-a", ttl(5s));
    CHECK_FALSE(p.is_leader());
    auto key = co_await p.campaign();
    CHECK(key.name == name);
    CHECK(key.key == name + "/" + election::lease_hex(key.lease));
    CHECK(key.create_revision > 0);
    CHECK(p.is_leader());
    CHECK(p.granted_ttl() == 5s);
    auto leader = co_await p.leader();
    REQUIRE(leader);
    CHECK(leader->value == "node-a");
    CHECK(leader->create_revision == key.create_revision);

    co_await p.resign();
    CHECK_FALSE(p.is_leader());
    auto reason = co_await p.keep_alive();
    CHECK(reason == errc::resigned);
    auto leader_after = co_await p.leader();
    CHECK_FALSE(leader_after);
    auto keys_after = co_await candidates(client, name);
    CHECK(keys_after.empty());
  });
}

TEST_CASE("bad participant input is refused with a clear error", "[participant]") {
  asio::io_context context;
  election::ClientOptions options;
  options.endpoints = {"127.0.0.1:2379"};
  election::Client client(context.get_executor(), options);
  auto code_of = [&](std::string name, std::string value, std::chrono::seconds t) {
    try {
      Participant p(client, name, value, ttl(t));
    } catch (const boost::system::system_error& e) {
      return e.code();
    }
    return boost::system::error_code{};
  };
  CHECK(code_of("", "v", 5s) == errc::invalid_election_name);
  CHECK(code_of("jobs/", "v", 5s) == errc::invalid_election_name);
  CHECK(code_of("jobs", std::string(2 * 1024 * 1024, 'x'), 5s) == errc::value_too_large);
  CHECK(code_of("jobs", "v", 0s) == errc::invalid_ttl);
  CHECK(code_of("jobs", "v", -1s) == errc::invalid_ttl);
  CHECK(code_of("jobs/a", "v", 5s) == boost::system::error_code{});
  auto negative_delay = ttl(5s);
  negative_delay.takeover_delay = -1ms;
  try {
    Participant p(client, "jobs", "v", negative_delay);
    FAIL("a negative takeover delay was accepted");
  } catch (const boost::system::system_error& e) {
    CHECK(e.code() == errc::invalid_argument);
    CHECK(std::string(e.what()).find("takeover delay") != std::string::npos);
  }
}

TEST_CASE("a TTL under etcd's minimum works with the granted TTL", "[participant]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    Participant p(client, election::test::unique_name("min-ttl"), "a", ttl(1s));
    co_await p.campaign();
    CHECK(p.granted_ttl() == 2s);
    co_await sleep_for(3s);
    CHECK(p.is_leader());
    co_await p.resign();
  });
}

TEST_CASE("a waiting candidate keeps its key and place for 10 s on a 2 s TTL", "[participant]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        const auto name = election::test::unique_name("waiting");
        Participant a(client, name, "a", ttl(2s));
        Participant b(client, name, "b", ttl(2s));
        co_await a.campaign();
        std::optional<election::LeaderKey> b_key;
        asio::co_spawn(
            client.get_executor(),
            [&]() -> asio::awaitable<void> { b_key = co_await b.campaign(); }, asio::detached);
        co_await sleep_for(1s);
        auto before = co_await candidates(client, name);
        REQUIRE(before.size() == 2);
        co_await sleep_for(10s);
        auto after = co_await candidates(client, name);
        REQUIRE(after.size() == 2);
        CHECK(after[1].create_revision() == before[1].create_revision());
        CHECK_FALSE(b_key);
        CHECK(a.is_leader());
        co_await a.resign();
        co_await require_within([&] { return b_key.has_value(); }, 2s, "b_key.has_value()");
        CHECK(b_key->create_revision == before[1].create_revision());
        CHECK(b.is_leader());
        co_await b.resign();
      },
      40s);
}

TEST_CASE("leadership ends when the lease is revoked from outside", "[participant]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    Participant p(client, election::test::unique_name("revoked"), "a", ttl(3s));
    auto key = co_await p.campaign();
    etcdctl(client.options().endpoints, "lease revoke " + election::lease_hex(key.lease));
    const auto start = Clock::now();
    // Revoking deletes the key too; whichever etcd tells first ends the leadership.
    const auto reason = co_await p.keep_alive();
    CHECK((reason == errc::lease_expired || reason == errc::key_deleted));
    CHECK(Clock::now() - start < 1500ms);
    CHECK_FALSE(p.is_leader());
  });
}

TEST_CASE("leadership ends when the leader key is deleted from outside", "[participant]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    Participant p(client, election::test::unique_name("deleted"), "a", ttl(10s));
    auto key = co_await p.campaign();
    etcdctl(client.options().endpoints, "del " + key.key);
    const auto start = Clock::now();
    auto reason = co_await p.keep_alive();
    CHECK(reason == errc::key_deleted);
    CHECK(Clock::now() - start < 1s);
    CHECK_FALSE(p.is_leader());
    // A fenced write from the deposed leader is refused by etcd.
    const auto late =
        co_await error_of([&] { return p.put_if_leader(key.name + "-data", "late"); });
    CHECK(late == errc::not_leader);
  });
}

TEST_CASE("a won campaign's term goes on with the campaign's feed: no new read, no new watch",
          "[participant]") {
  // The term watches for the key's deletion with the view the campaign won from. A term that
  // made a feed of its own read the election and created its watch again after every win
  // (10,000 wins on a Session: 10,000 more reads and watch creates).
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    auto core = election::detail::access::core(client);
    const auto name = election::test::unique_name("feed-kept");
    Participant p(client, name, "a", ttl(10s));
    std::optional<election::LeaderKey> won;
    asio::co_spawn(
        co_await asio::this_coro::executor,
        [&]() -> asio::awaitable<void> { won = co_await p.campaign(); }, asio::detached);
    std::weak_ptr<election::detail::ElectionFeed> campaign_feed;
    co_await require_within(
        [&] {
          auto it = core->election_feeds.find(name);
          if (it == core->election_feeds.end()) return false;
          campaign_feed = it->second;
          return !campaign_feed.expired();
        },
        10s, "the campaign's feed");
    co_await require_within([&] { return won.has_value(); }, 10s, "the win");
    REQUIRE(p.is_leader());
    auto feed = campaign_feed.lock();
    REQUIRE(feed);  // still there: the term holds it
    CHECK(feed == election::detail::ElectionFeed::of(core, name));
    CHECK(feed->synced());
    // And it ends the term when the key goes.
    etcdctl(client.options().endpoints, "del " + won->key);
    auto reason = co_await p.keep_alive();
    CHECK(reason == errc::key_deleted);
  });
}

TEST_CASE("with etcd frozen, the leader steps down at its local deadline, before the TTL",
          "[participant][freeze]") {
  auto etcd = election::test::EtcdCluster::start(work_path("participant-freeze"), 1);
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd.endpoints()));
        Participant p(client, election::test::unique_name("freeze"), "a", ttl(3s));
        co_await p.campaign();
        co_await sleep_for(1200ms);
        election::test::Frozen frozen(etcd.pid(0));
        const auto frozen_at = Clock::now();
        const auto deadline = *p.deadline();
        auto reason = co_await p.keep_alive();
        CHECK(reason == errc::lease_deadline_passed);
        const auto ended = Clock::now();
        CHECK_FALSE(p.is_leader());
        CHECK(ended >= deadline);
        CHECK(ended < frozen_at + 3s);
      },
      30s);
}

TEST_CASE("a campaign whose lease dies while waiting fails instead of winning", "[participant]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("dead-waiter");
    Participant a(client, name, "a", ttl(5s));
    Participant b(client, name, "b", ttl(5s));
    co_await a.campaign();
    boost::system::error_code b_error;
    bool b_done = false;
    asio::co_spawn(
        client.get_executor(),
        [&]() -> asio::awaitable<void> {
          b_error = co_await error_of([&] { return b.campaign(); });
          b_done = true;
        },
        asio::detached);
    co_await sleep_for(500ms);
    auto keys = co_await candidates(client, name);
    REQUIRE(keys.size() == 2);
    etcdctl(client.options().endpoints, "lease revoke " + election::lease_hex(keys[1].lease()));
    co_await require_within([&] { return b_done; }, 3s, "b_done");
    CHECK(b_error == errc::lease_expired);
    CHECK_FALSE(b.is_leader());
    CHECK(a.is_leader());
    co_await a.resign();
  });
}

TEST_CASE("a campaign cancelled by a timer returns promptly and leaves no key",
          "[participant][cancel]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("cancel-timer");
    Participant a(client, name, "a", ttl(5s));
    Participant b(client, name, "b", ttl(5s));
    co_await a.campaign();
    asio::steady_timer timer(client.get_executor(), 300ms);
    const auto start = Clock::now();
    auto result = co_await (b.campaign() || timer.async_wait(asio::use_awaitable));
    CHECK(result.index() == 1);
    CHECK(Clock::now() - start < 800ms);
    CHECK_FALSE(b.is_leader());
    auto keys = co_await candidates(client, name);
    REQUIRE(keys.size() == 1);
    CHECK(keys[0].value() == "a");
    co_await a.resign();
  });
}

TEST_CASE(
    "a campaign cancelled by a cancellation signal or by destroying the participant leaves no key",
    "[participant][cancel]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("cancel-signal");
    Participant a(client, name, "a", ttl(5s));
    co_await a.campaign();

    asio::cancellation_signal signal;
    boost::system::error_code first;
    bool first_done = false;
    Participant b(client, name, "b", ttl(5s));
    asio::co_spawn(
        client.get_executor(), b.campaign(),
        asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr e, election::LeaderKey) {
          try {
            if (e) std::rethrow_exception(e);
          } catch (const boost::system::system_error& error) {
            first = error.code();
          }
          first_done = true;
        }));
    co_await sleep_for(300ms);
    auto queued = co_await candidates(client, name);
    REQUIRE(queued.size() == 2);
    signal.emit(asio::cancellation_type::terminal);
    co_await require_within([&] { return first_done; }, 1s, "first_done");
    CHECK(first == asio::error::operation_aborted);
    auto left = co_await candidates(client, name);
    CHECK(left.size() == 1);

    auto c = std::make_unique<Participant>(client, name, "c", ttl(5s));
    boost::system::error_code second;
    bool second_done = false;
    asio::co_spawn(
        client.get_executor(),
        [&, p = c.get()]() -> asio::awaitable<void> {
          second = co_await error_of([&] { return p->campaign(); });
          second_done = true;
        },
        asio::detached);
    co_await sleep_for(300ms);
    auto queued_again = co_await candidates(client, name);
    REQUIRE(queued_again.size() == 2);
    c.reset();
    co_await require_within([&] { return second_done; }, 1s, "second_done");
    CHECK(second == asio::error::operation_aborted);
    auto left_again = co_await candidates(client, name);
    CHECK(left_again.size() == 1);
    co_await a.resign();
  });
}

TEST_CASE("a win that races the cancel either leads or leaves no key", "[participant][cancel]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        int wins = 0, cancels = 0;
        for (int round = 0; round < 20; ++round) {
          const auto name = election::test::unique_name("race");
          Participant a(client, name, "a", ttl(5s));
          Participant b(client, name, "b", ttl(5s));
          co_await a.campaign();
          // a resigns at about the moment b's timer fires.
          asio::co_spawn(
              client.get_executor(),
              [&]() -> asio::awaitable<void> {
                co_await sleep_for(std::chrono::milliseconds(95 + round % 10));
                co_await a.resign();
              },
              asio::detached);
          asio::steady_timer timer(client.get_executor(), 100ms);
          auto result = co_await (b.campaign() || timer.async_wait(asio::use_awaitable));
          co_await sleep_for(50ms);
          auto keys = co_await candidates(client, name);
          if (result.index() == 0) {
            ++wins;
            CHECK(b.is_leader());
            REQUIRE(keys.size() == 1);
            CHECK(keys[0].value() == "b");
            co_await b.resign();
          } else {
            ++cancels;
            CHECK_FALSE(b.is_leader());
            CHECK(keys.empty());
          }
        }
        INFO("wins " << wins << ", cancels " << cancels);
        CHECK(wins + cancels == 20);
      },
      60s);
}

TEST_CASE("after an etcd crash a waiting candidate campaigns again and keeps its place",
          "[participant][restart]") {
  auto etcd = election::test::EtcdCluster::start(work_path("participant-restart"), 1);
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd.endpoints()));
        const auto name = election::test::unique_name("reconnect");
        Participant a(client, name, "a", ttl(10s));
        Participant b(client, name, "b", ttl(10s));
        co_await a.campaign();
        std::optional<election::LeaderKey> b_key;
        asio::co_spawn(
            client.get_executor(),
            [&]() -> asio::awaitable<void> { b_key = co_await b.campaign(); }, asio::detached);
        co_await sleep_for(500ms);
        auto before = co_await candidates(client, name);
        REQUIRE(before.size() == 2);
        // A crash, not a graceful stop: etcd resigns the campaigns it is serving when it shuts
        // down cleanly, but a crashed member leaves the keys to their leases.
        etcd.kill_member(0);
        etcd.start_member(0);
        co_await sleep_for(3s);  // b's campaign call broke with the crash and was made again
        CHECK(a.is_leader());
        auto after = co_await candidates(client, name);
        REQUIRE(after.size() == 2);
        CHECK(after[1].create_revision() == before[1].create_revision());
        co_await a.resign();
        co_await require_within([&] { return b_key.has_value(); }, 3s, "b_key.has_value()");
        CHECK(b_key->create_revision == before[1].create_revision());
        co_await b.resign();
      },
      40s);
}

TEST_CASE("a waiting candidate keeps its key and place through an outage past its deadline",
          "[participant][restart]") {
  // etcd down for longer than the lease's local deadline allows. The leader must step down at
  // its deadline; the candidate in line must not give its lease up, because etcd, restarted,
  // still has it (a new raft leader extends every lease): it leads next, with its first key.
  auto etcd = election::test::EtcdCluster::start(work_path("participant-outage"), 1);
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd.endpoints()));
        const auto name = election::test::unique_name("outage");
        Participant a(client, name, "a", ttl(2s));
        Participant b(client, name, "b", ttl(2s));
        co_await a.campaign();
        std::optional<election::LeaderKey> b_key;
        boost::system::error_code b_error;
        asio::co_spawn(
            client.get_executor(),
            [&]() -> asio::awaitable<void> {
              try {
                b_key = co_await b.campaign();
              } catch (const boost::system::system_error& e) {
                b_error = e.code();
              }
            },
            asio::detached);
        co_await sleep_for(500ms);
        auto before = co_await candidates(client, name);
        REQUIRE(before.size() == 2);
        etcd.kill_member(0);
        co_await sleep_for(3500ms);  // the deadline is 1.8 s after the last answered renewal
        CHECK_FALSE(a.is_leader());
        CHECK(b.lease_id().has_value());
        etcd.start_member(0);
        co_await require_within([&] { return b_key.has_value() || b_error; }, 10s,
                                "b won or failed");
        INFO("b's campaign: " << b_error.message());
        REQUIRE(b_key.has_value());
        CHECK(b_key->create_revision == before[1].create_revision());
        CHECK(b.is_leader());
        co_await b.resign();
      },
      40s);
}

TEST_CASE("a fenced write succeeds while leading and is refused by etcd after leadership is lost",
          "[participant]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("fencing");
    Participant a(client, name, "a", ttl(5s));
    Participant b(client, name, "b", ttl(5s));
    const auto early = co_await error_of([&] { return a.put_if_leader(name + "-data", "x"); });
    CHECK(early == errc::not_leader);
    auto a_key = co_await a.campaign();
    auto rev = co_await a.put_if_leader(name + "-data", "from a");
    CHECK(rev > a_key.create_revision);
    etcdctl(client.options().endpoints, "lease revoke " + election::lease_hex(a_key.lease));
    auto b_key = co_await b.campaign();
    CHECK(b_key.create_revision > a_key.create_revision);
    // a has not even noticed yet, or has: either way etcd refuses its write.
    const auto stale = co_await error_of([&] { return a.put_if_leader(name + "-data", "stale"); });
    CHECK(stale == errc::not_leader);
    co_await b.put_if_leader(name + "-data", "from b");
    auto data =
        co_await election::detail::range(*election::detail::access::core(client), name + "-data");
    REQUIRE(data.kvs_size() == 1);
    CHECK(data.kvs(0).value() == "from b");
    co_await b.resign();
  });
}

TEST_CASE("observe yields the leader, proclaims, new leaders and no leader, in order",
          "[observe]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("observe");
    election::Observer observer(client, name);
    auto first = co_await observer.next();
    CHECK_FALSE(first.has_leader());

    Participant a(client, name, "a", ttl(5s));
    Participant b(client, name, "b", ttl(5s));
    auto a_key = co_await a.campaign();
    auto e1 = co_await observer.next();
    REQUIRE(e1.has_leader());
    CHECK(e1.leader->value == "a");
    CHECK(e1.leader->create_revision == a_key.create_revision);

    co_await a.proclaim("a-2");
    auto e2 = co_await observer.next();
    REQUIRE(e2.has_leader());
    CHECK(e2.leader->value == "a-2");
    CHECK(e2.leader->create_revision == a_key.create_revision);

    std::optional<election::LeaderKey> b_key;
    asio::co_spawn(
        client.get_executor(), [&]() -> asio::awaitable<void> { b_key = co_await b.campaign(); },
        asio::detached);
    co_await sleep_for(200ms);  // b queued: not a leadership change, so no event
    co_await a.resign();
    auto e3 = co_await observer.next();
    REQUIRE(e3.has_leader());
    CHECK(e3.leader->value == "b");
    co_await require_within([&] { return b_key.has_value(); }, 2s, "b_key.has_value()");
    CHECK(e3.leader->create_revision == b_key->create_revision);

    co_await b.resign();
    auto e4 = co_await observer.next();
    CHECK_FALSE(e4.has_leader());
    CHECK(e4.revision > e3.revision);

    // Nothing else is pending: the next wait runs into the timer.
    asio::steady_timer timer(client.get_executor(), 300ms);
    auto quiet = co_await (observer.next() || timer.async_wait(asio::use_awaitable));
    CHECK(quiet.index() == 1);
  });
}

TEST_CASE("observe carries on across an etcd restart without duplicates or gaps",
          "[observe][restart]") {
  auto etcd = election::test::EtcdCluster::start(work_path("observe-restart"), 1);
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd.endpoints()));
        const auto name = election::test::unique_name("observe-restart");
        election::Observer observer(client, name);
        Participant a(client, name, "v0", ttl(10s));
        co_await a.campaign();
        auto e0 = co_await observer.next();
        REQUIRE(e0.has_leader());
        CHECK(e0.leader->value == "v0");
        etcd.restart_member(0);
        for (int i = 1; i <= 3; ++i) co_await a.proclaim("v" + std::to_string(i));
        for (int i = 1; i <= 3; ++i) {
          auto e = co_await observer.next();
          REQUIRE(e.has_leader());
          CHECK(e.leader->value == "v" + std::to_string(i));
        }
        asio::steady_timer timer(client.get_executor(), 300ms);
        auto quiet = co_await (observer.next() || timer.async_wait(asio::use_awaitable));
        CHECK(quiet.index() == 1);
        co_await a.resign();
      },
      40s);
}

TEST_CASE(
    "with a takeover delay, a leader whose key is removed early stops before its successor "
    "starts",
    "[participant]") {
  // An early removal (an operator's `etcdctl del`, or a lease revoked by an etcd raft leader
  // that resumed from a pause) ends the old leader's term only when its watch says so. Without
  // a delay its successor can start first; with one, the successor waits until after.
  run([]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    election::Client client_a(executor, fixture_options());  // two processes, in effect
    election::Client client_b(executor, fixture_options());
    const auto name = election::test::unique_name("takeover");
    auto options = ttl(10s);
    options.takeover_delay = 300ms;
    Participant a(client_a, name, "a", ttl(10s));
    Participant b(client_b, name, "b", options);
    auto key = co_await a.campaign();
    Clock::time_point a_lost{}, b_won{};
    asio::co_spawn(
        executor,
        [&]() -> asio::awaitable<void> {
          co_await a.keep_alive();
          a_lost = Clock::now();
        },
        asio::detached);
    asio::co_spawn(
        executor,
        [&]() -> asio::awaitable<void> {
          co_await b.campaign();
          b_won = Clock::now();
        },
        asio::detached);
    co_await sleep_for(300ms);  // b is in line
    const auto deleted = Clock::now();
    etcdctl(client_a.options().endpoints, "del " + key.key);
    co_await require_within([&] { return a_lost != Clock::time_point{}; }, 2s, "a lost");
    CHECK_FALSE(b.is_leader());  // won in etcd, but still waiting out the delay
    co_await require_within([&] { return b_won != Clock::time_point{}; }, 3s, "b won");
    CHECK(a_lost < b_won);
    CHECK(b_won - deleted >= 300ms);
    CHECK(b.is_leader());
    co_await b.resign();
  });
}

TEST_CASE("graceful resign hands over to the next candidate in milliseconds", "[participant]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("handover");
    Participant a(client, name, "a", ttl(10s));
    Participant b(client, name, "b", ttl(10s));
    co_await a.campaign();
    Clock::time_point won{};
    asio::co_spawn(
        client.get_executor(),
        [&]() -> asio::awaitable<void> {
          co_await b.campaign();
          won = Clock::now();
        },
        asio::detached);
    co_await sleep_for(300ms);
    const auto start = Clock::now();
    co_await a.resign();
    co_await require_within([&] { return won != Clock::time_point{}; }, 2s,
                            "won != Clock::time_point{}");
    CHECK(won - start < 300ms);
    co_await b.resign();
  });
}

TEST_CASE("100 participants on one client: one leader at a time, in campaign order",
          "[participant][scale]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        const auto name = election::test::unique_name("hundred");
        constexpr int n = 100;
        std::vector<std::unique_ptr<Participant>> ps;
        std::vector<std::int64_t> won_revision(n, 0);
        for (int i = 0; i < n; ++i)
          ps.push_back(std::make_unique<Participant>(client, name, std::to_string(i), ttl(10s)));
        for (int i = 0; i < n; ++i) {
          asio::co_spawn(
              client.get_executor(),
              [&, i]() -> asio::awaitable<void> {
                won_revision[i] = (co_await ps[i]->campaign()).create_revision;
              },
              asio::detached);
        }
        std::vector<mvccpb::KeyValue> queued;
        for (int tries = 0; tries < 200 && queued.size() < n; ++tries) {
          co_await sleep_for(50ms);
          queued = co_await candidates(client, name);
        }
        REQUIRE(queued.size() == n);
        std::sort(queued.begin(), queued.end(),
                  [](auto& x, auto& y) { return x.create_revision() < y.create_revision(); });
        for (int turn = 0; turn < n; ++turn) {
          const int expected = std::stoi(queued[turn].value());
          co_await require_within([&] { return won_revision[expected] != 0; }, 2s,
                                  "won_revision[expected] != 0");
          int leaders = 0;
          for (auto& p : ps) leaders += p->is_leader();
          CHECK(leaders == 1);
          CHECK(ps[expected]->is_leader());
          CHECK(won_revision[expected] == queued[turn].create_revision());
          co_await ps[expected]->resign();
        }
      },
      90s);
}

TEST_CASE("interop with etcdctl elect: one queue, one view of the leader",
          "[participant][interop]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        const auto endpoint = client.options().endpoints.front();
        const auto name = election::test::unique_name("interop");
        Participant ours(client, name, "ours", ttl(5s));
        co_await ours.campaign();

        // etcdctl queues behind our leader.
        election::test::ChildProcess ctl(
            {"etcdctl", "--endpoints=" + endpoint, "elect", name, "theirs"},
            work_path("interop-elect.out"), {"ETCDCTL_API=3"});
        co_await sleep_for(700ms);
        CHECK(ctl.output().empty());
        auto queued = co_await candidates(client, name);
        REQUIRE(queued.size() == 2);
        CHECK(queued[1].value() == "theirs");

        // etcdctl's view of the leader is ours.
        election::test::ChildProcess show(
            {"etcdctl", "--endpoints=" + endpoint, "elect", "-l", name},
            work_path("interop-show.out"), {"ETCDCTL_API=3"});
        // `elect -l` keeps listening: read what it printed, then it is killed with `show`.
        co_await require_within([&] { return show.output().find("ours") != std::string::npos; }, 3s,
                                "etcdctl elect -l to show our leader");

        // We resign: etcdctl leads, and our observer and leader() see it.
        election::Observer observer(client, name);
        auto current = co_await observer.next();
        REQUIRE(current.has_leader());
        CHECK(current.leader->value == "ours");
        co_await ours.resign();
        auto next = co_await observer.next();
        REQUIRE(next.has_leader());
        CHECK(next.leader->value == "theirs");
        co_await require_within([&] { return ctl.output().find("theirs") != std::string::npos; },
                                3s, "etcdctl elect to report that it leads");
        auto leader = co_await ours.leader();
        REQUIRE(leader);
        CHECK(leader->value == "theirs");

        // We queue behind etcdctl; when it resigns (SIGINT), we lead.
        std::optional<election::LeaderKey> key;
        asio::co_spawn(
            client.get_executor(),
            [&]() -> asio::awaitable<void> { key = co_await ours.campaign(); }, asio::detached);
        co_await sleep_for(500ms);
        CHECK_FALSE(key);
        ctl.signal(SIGINT);
        co_await require_within([&] { return key.has_value(); }, 3s, "key.has_value()");
        CHECK(ours.is_leader());
        co_await ours.resign();
      },
      40s);
}

TEST_CASE("one campaign at a time: a second campaign() is refused", "[participant]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("twice");
    Participant a(client, name, "a", ttl(5s));
    Participant b(client, name, "b", ttl(5s));
    co_await a.campaign();
    const auto again = co_await error_of([&] { return a.campaign(); });
    CHECK(again == errc::invalid_argument);
    asio::co_spawn(client.get_executor(), b.campaign(),
                   [](std::exception_ptr, election::LeaderKey) {});
    co_await sleep_for(200ms);
    const auto concurrent = co_await error_of([&] { return b.campaign(); });
    CHECK(concurrent == errc::invalid_argument);
    co_await a.resign();
    co_await require_within([&] { return b.is_leader(); }, 2s, "b to lead after a resigned");
    co_await b.resign();
  });
}

TEST_CASE("acquire_lease tells the lease before waiting in line, and campaign uses it",
          "[participant]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    Participant p(client, election::test::unique_name("acquire"), "a", ttl(5s));
    CHECK_FALSE(p.lease_id());
    const auto lease = co_await p.acquire_lease();
    CHECK(p.lease_id() == lease);
    CHECK(p.granted_ttl() == 5s);
    auto key = co_await p.campaign();
    CHECK(key.lease == lease);
    co_await p.resign();
    CHECK_FALSE(p.lease_id());
  });
}

TEST_CASE(
    "a lease given up at its deadline while etcd was frozen does not linger as a phantom leader",
    "[participant][freeze]") {
  auto etcd = election::test::EtcdCluster::start(work_path("phantom"), 1);
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd.endpoints()));
        const auto name = election::test::unique_name("phantom");
        Participant p(client, name, "a", ttl(3s));
        auto first = co_await p.campaign();
        etcd.freeze(0);
        const auto reason = co_await p.keep_alive();
        CHECK(reason == errc::lease_deadline_passed);
        // etcd crashes while frozen and comes back: it restores the old lease with a fresh TTL,
        // so the old key would head the queue for another TTL. Campaigning again must not wait
        // behind it.
        etcd.kill_member(0);
        etcd.start_member(0);
        const auto thawed = Clock::now();
        auto second = co_await p.campaign();
        const auto waited = Clock::now() - thawed;
        INFO("waited " << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()
                       << " ms");
        CHECK(second.lease != first.lease);
        CHECK(waited < 2500ms);
        auto keys = co_await candidates(client, name);
        REQUIRE(keys.size() == 1);
        CHECK(keys[0].lease() == second.lease);
        co_await p.resign();
      },
      40s);
}

// The chaos suite's GC-pause case (a leader SIGSTOPped past its TTL, then continued): the
// key's deletion and the lease's expiry are already waiting when the process runs again, and
// used to be reported instead, as if the leadership had lasted until they were noticed.
TEST_CASE("a leader that stalls past its deadline says the deadline ended its leadership",
          "[participant][pause]") {
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        const auto name = election::test::unique_name("stall");
        Participant p(client, name, "a", ttl(2s));
        co_await p.campaign();
        co_await sleep_for(300ms);
        // No renewal in flight: an answer to one sent before the stall would rightly move the
        // deadline (it counts from its send time). Nothing runs between this check and the stall.
        co_await require_within(
            [&] {
              const auto m = client.metrics();
              return m.renewals_sent == m.renewals_answered;
            },
            2s, "every renewal answered");
        const auto deadline = *p.deadline();
        // Nothing runs on this thread meanwhile: no renewal, no timer, like a stopped process.
        // etcd expires the lease (TTL + up to 0.5 s + a commit) and deletes the key.
        std::this_thread::sleep_for(4s);
        const auto reason = co_await p.keep_alive();
        INFO("reason: " << reason.message());
        CHECK(reason == errc::lease_deadline_passed);
        CHECK(*p.deadline() == deadline);
        CHECK_FALSE(p.is_leader());
        co_await p.resign();
      },
      30s);
}

TEST_CASE("observers of one election on one client share a watch and each sees every change",
          "[observe]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("observe-shared");
    auto early = std::make_unique<election::Observer>(client, name);
    election::Observer doomed(client, name);
    auto first = co_await early->next();
    CHECK_FALSE(first.has_leader());
    auto d1 = co_await doomed.next();
    CHECK_FALSE(d1.has_leader());

    Participant a(client, name, "a", ttl(5s));
    co_await a.campaign();
    auto e1 = co_await early->next();
    REQUIRE(e1.has_leader());
    CHECK(e1.leader->value == "a");

    // A late observer starts from the state now, not from the feed's history.
    election::Observer late(client, name);
    auto l1 = co_await late.next();
    REQUIRE(l1.has_leader());
    CHECK(l1.leader->value == "a");
    CHECK(l1.revision == e1.revision);

    // An observer destroyed while its next() waits ends that wait; the others carry on.
    std::optional<boost::system::error_code> doomed_ended;
    auto d2 = co_await doomed.next();
    CHECK(d2.has_leader());
    auto wait_doomed = [&]() -> asio::awaitable<void> {
      try {
        co_await doomed.next();
        doomed_ended = boost::system::error_code{};
      } catch (const boost::system::system_error& e) {
        doomed_ended = e.code();
      }
    };
    asio::co_spawn(client.get_executor(), wait_doomed, asio::detached);
    co_await sleep_for(50ms);
    { election::Observer gone(std::move(doomed)); }
    co_await require_within([&] { return doomed_ended.has_value(); }, 1s, "the wait ended");
    CHECK(*doomed_ended == asio::error::operation_aborted);

    co_await a.proclaim("a-2");
    auto e2 = co_await early->next();
    auto l2 = co_await late.next();
    CHECK(e2.leader->value == "a-2");
    CHECK(l2.leader->value == "a-2");
    CHECK(e2.revision == l2.revision);

    // The last observers gone, a new one starts afresh.
    early.reset();
    { election::Observer gone(std::move(late)); }
    election::Observer again(client, name);
    auto g1 = co_await again.next();
    REQUIRE(g1.has_leader());
    CHECK(g1.leader->value == "a-2");
    co_await a.resign();
    auto g2 = co_await again.next();
    CHECK_FALSE(g2.has_leader());
  });
}
