// Which deletions of a leader key get the takeover delay, against the fixture's etcd 3.4.23
// (whose default delay is 200 ms): a resignation this library signs gets none; an operator's
// `etcdctl del` or `etcdctl lease revoke`, and a resignation by etcdctl elect (which does not
// sign), get the whole delay. And no signature outlives its lease.
#include "api/access.hpp"
#include "election/election.hpp"
#include "lease/lease_state.hpp"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/process.hpp"
#include "support/run.hpp"
#include "transport/client_core.hpp"
#include "transport/kv.hpp"
#include "transport/watch_hub.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <optional>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using election::Participant;
using election::test::fixture_options;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using election::test::ttl;
using Steady = std::chrono::steady_clock;

namespace {

std::string endpoint() { return fixture_options().endpoints.front(); }

void etcdctl(const std::string& args) {
  const auto command =
      "ETCDCTL_API=3 etcdctl --endpoints=" + endpoint() + " " + args + " >/dev/null";
  REQUIRE(std::system(command.c_str()) == 0);
}

// The signatures etcd holds for `election` (resignations not yet taken with their lease).
asio::awaitable<int> signatures(election::Client& client, const std::string& election) {
  auto& core = *election::detail::access::core(client);
  auto reply = co_await election::detail::range(core, election + std::string("0\0", 2),
                                                election::detail::resignations_end(election));
  co_return static_cast<int>(reply.kvs_size());
}

// Whether etcd holds no signature of `election` within `limit` (a revocation in flight lands).
asio::awaitable<bool> no_signatures_within(election::Client& client, const std::string& election,
                                           std::chrono::milliseconds limit) {
  const auto end = Steady::now() + limit;
  for (;;) {
    const int left = co_await signatures(client, election);
    if (left == 0) co_return true;
    if (Steady::now() >= end) co_return false;
    co_await sleep_for(20ms);
  }
}

// `next` campaigns in the background; returns when it leads, and how long after `since`.
struct Successor {
  std::optional<election::LeaderKey> key;
  Steady::time_point won_at;
};

asio::awaitable<void> campaign_into(Participant& p, Successor& out) {
  out.key = co_await p.campaign();
  out.won_at = Steady::now();
}

asio::awaitable<void> behind(Participant& leader, Participant& next, Successor& out) {
  co_await leader.campaign();
  asio::co_spawn(co_await asio::this_coro::executor, campaign_into(next, out), asio::detached);
  co_await require_within([&] { return next.lease_id().has_value(); }, 5s, "the next in line");
  co_await sleep_for(300ms);  // in line, its watch current
  REQUIRE_FALSE(out.key);
}

std::chrono::milliseconds ms(Steady::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d);
}

}  // namespace

TEST_CASE("a resignation by this library is signed: the next candidate leads without the delay",
          "[handover]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("signed");
    Participant a(client, name, "a", ttl(5s));
    Participant b(client, name, "b", ttl(5s));
    Successor next;
    co_await behind(a, b, next);
    const auto resigned_at = Steady::now();
    co_await a.resign();
    co_await require_within([&] { return next.key.has_value(); }, 5s, "b to lead");
    INFO("b led " << ms(next.won_at - resigned_at).count() << " ms after a.resign()");
    REQUIRE(b.takeover_delay());
    CHECK(*b.takeover_delay() == 200ms);  // etcd 3.4.23: the guard is on
    CHECK(*b.takeover_wait() == 0ms);     // and not needed
    CHECK(next.won_at - resigned_at < *b.takeover_delay());
    const int after_resign = co_await signatures(client, name);
    CHECK(after_resign == 0);  // gone with a's lease, which resign() waited for

    // The destructor signs too.
    std::optional<Participant> c;
    c.emplace(client, name, "c", ttl(5s));
    Successor after;
    asio::co_spawn(co_await asio::this_coro::executor, campaign_into(*c, after), asio::detached);
    co_await require_within([&] { return c->lease_id().has_value(); }, 5s, "c in line");
    co_await sleep_for(300ms);
    { Participant gone(std::move(b)); }
    co_await require_within([&] { return after.key.has_value(); }, 5s, "c to lead");
    CHECK(*c->takeover_wait() == 0ms);
    co_await c->resign();
    const bool none = co_await no_signatures_within(client, name, 2s);
    CHECK(none);  // b's revocation, in the background, took its signature
  });
}

TEST_CASE("a Session participant's signed resignation leaves the lease and no signature",
          "[handover]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    election::Session session(client, {.ttl = 5s});
    const auto name = election::test::unique_name("signed-session");
    Participant a(session, name, "a");
    Participant b(client, name, "b", ttl(5s));
    Successor next;
    co_await behind(a, b, next);
    co_await a.resign();
    co_await require_within([&] { return next.key.has_value(); }, 5s, "b to lead");
    CHECK(*b.takeover_wait() == 0ms);
    CHECK(session.lease_id());  // the session's lease lives on
    const int left = co_await signatures(client, name);
    CHECK(left == 0);  // its signature deleted after it, before resign() returned
    co_await b.resign();
    session.close();
  });
}

TEST_CASE("a Leadership's stop() signs: the next Leadership leads without the delay",
          "[handover]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("signed-stop");
    auto idle = [](Participant&, const election::LeaderKey&) -> asio::awaitable<void> {
      co_await sleep_for(24h);
    };
    std::optional<Steady::time_point> b_won;
    election::LeadershipHooks a_hooks;
    std::optional<Steady::time_point> a_won;
    a_hooks.elected = [&](const election::LeaderKey&) { a_won = Steady::now(); };
    election::LeadershipHooks b_hooks;
    b_hooks.elected = [&](const election::LeaderKey&) { b_won = Steady::now(); };
    election::Leadership a(client, name, "a", idle, {.participant = ttl(5s)}, a_hooks);
    election::Leadership b(client, name, "b", idle, {.participant = ttl(5s)}, b_hooks);
    bool a_done = false, b_done = false;
    a.async_run([&](boost::system::error_code) { a_done = true; });
    co_await require_within([&] { return a_won.has_value(); }, 5s, "a to lead");
    b.async_run([&](boost::system::error_code) { b_done = true; });
    co_await sleep_for(500ms);
    const auto stopped_at = Steady::now();
    a.stop();
    co_await require_within([&] { return b_won.has_value(); }, 5s, "b to lead");
    INFO("b led " << ms(*b_won - stopped_at).count() << " ms after a.stop()");
    CHECK(*b.participant().takeover_wait() == 0ms);
    b.stop();
    co_await require_within([&] { return a_done && b_done; }, 5s, "both to stop");
    const int left = co_await signatures(client, name);
    CHECK(left == 0);
  });
}

TEST_CASE("an operator's etcdctl del of the leader key still gets the takeover delay",
          "[handover]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("operator-del");
    Participant a(client, name, "a", ttl(5s));
    Participant b(client, name, "b", ttl(5s));
    Successor next;
    co_await behind(a, b, next);
    const auto deleted_at = Steady::now();
    etcdctl("del " + a.leader_key()->key);
    co_await require_within([&] { return next.key.has_value(); }, 5s, "b to lead");
    INFO("b led " << ms(next.won_at - deleted_at).count() << " ms after the delete");
    CHECK(*b.takeover_wait() > 100ms);  // most of the 200 ms, counted from when it saw it
    CHECK(next.won_at - deleted_at >= *b.takeover_wait());
    co_await b.resign();
  });
}

TEST_CASE("an operator's etcdctl lease revoke of the leader's lease still gets the delay",
          "[handover]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("operator-revoke");
    Participant a(client, name, "a", ttl(5s));
    Participant b(client, name, "b", ttl(5s));
    Successor next;
    co_await behind(a, b, next);
    const auto revoked_at = Steady::now();
    etcdctl("lease revoke " + election::lease_hex(*a.lease_id()));
    co_await require_within([&] { return next.key.has_value(); }, 5s, "b to lead");
    INFO("b led " << ms(next.won_at - revoked_at).count() << " ms after the revoke");
    CHECK(*b.takeover_wait() > 100ms);
    CHECK(next.won_at - revoked_at >= *b.takeover_wait());
    co_await b.resign();
  });
}

TEST_CASE("a resignation by etcdctl elect, which does not sign, gets the delay", "[handover]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        const auto name = election::test::unique_name("etcdctl-resign");
        election::test::ChildProcess ctl(
            {"etcdctl", "--endpoints=" + endpoint(), "elect", name, "theirs"},
            std::filesystem::path(ELECTION_TEST_WORK_DIR) /
                ("handover-elect-" + std::to_string(::getpid()) + ".out"),
            {"ETCDCTL_API=3"});
        co_await require_within([&] { return ctl.output().find("theirs") != std::string::npos; },
                                5s, "etcdctl to lead");
        Participant ours(client, name, "ours", ttl(5s));
        Successor next;
        asio::co_spawn(co_await asio::this_coro::executor, campaign_into(ours, next),
                       asio::detached);
        co_await require_within([&] { return ours.lease_id().has_value(); }, 5s, "ours in line");
        co_await sleep_for(500ms);
        REQUIRE_FALSE(next.key);
        ctl.signal(SIGINT);  // etcdctl resigns: a plain delete of its key
        co_await require_within([&] { return next.key.has_value(); }, 5s, "ours to lead");
        CHECK(*ours.takeover_wait() > 100ms);
        co_await ours.resign();
      },
      30s);
}

TEST_CASE("a signature left by a resignation cut short goes with its lease", "[handover]") {
  run(
      []() -> asio::awaitable<void> {
        const auto name = election::test::unique_name("signature-left");
        election::Client observer(co_await asio::this_coro::executor, fixture_options());
        {
          // The Client closes at once after the resignation is sent: the signed deletion may
          // land without the revocation after it.
          election::Client client(co_await asio::this_coro::executor, fixture_options());
          Participant a(client, name, "a", ttl(2s));
          co_await a.campaign();
        }
        // At most the lease's TTL, and etcd's expiry loop, after.
        const bool none = co_await no_signatures_within(observer, name, 5s);
        CHECK(none);
      },
      20s);
}

// A signed resignation holds the Client's streams while etcd applies it (Withdrawal::start):
// a stream's close or a watch's cancel right behind the request is member work that delays
// the deletion's event to the next candidate. The holds themselves:

TEST_CASE("a held keep-alive stream outlives its last lease and renews the next one",
          "[handover][keep-alive]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto& core = election::detail::access::core(client);
    const auto opened = [&] { return core->stats().keep_alive_streams.load(); };
    auto first = co_await election::Lease::grant(client, 5s);
    co_await require_within([&] { return opened() == 1; }, 5s, "the keep-alive stream");
    auto hold = core->keep_alive_hub->hold_stream();
    co_await first.revoke();
    co_await sleep_for(200ms);  // without the hold, the stream is closed by now
    auto second = co_await election::Lease::grant(client, 5s);
    const auto answered = core->stats().renewals_answered.load();
    co_await require_within([&] { return core->stats().renewals_answered.load() > answered; }, 5s,
                            "a renewal of the second lease");
    CHECK(opened() == 1);  // renewed on the held stream
    co_await second.revoke();
    hold.reset();  // the last hold: the stream closes
    co_await sleep_for(200ms);
    auto third = co_await election::Lease::grant(client, 5s);
    co_await require_within([&] { return opened() == 2; }, 5s, "a new stream after the hold");
    co_await third.revoke();
  });
}

namespace {

struct Heard : election::detail::WatchSink {
  std::vector<mvccpb::Event> events;
  void on_events(std::vector<mvccpb::Event> e) override {
    for (auto& x : e) events.push_back(std::move(x));
  }
  void on_compacted(std::int64_t) override {}
  void on_refused(boost::system::error_code, const std::string&) override {}
  void on_interrupted() override {}
};

}  // namespace

TEST_CASE("a held watch stream outlives its last watch, which hears nothing after its cancel",
          "[handover][watch]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto& core = election::detail::access::core(client);
    auto hub = election::detail::WatchHub::of(core);
    const auto key = election::test::unique_name("held-watch");
    const auto opened = [&] { return core->stats().watch_streams.load(); };
    const auto now = [&]() -> asio::awaitable<std::int64_t> {
      co_return (co_await election::detail::range(*core, key, {})).header().revision();
    };
    // A watch from the next revision, and a put it hears.
    const auto heard_put = [&](std::shared_ptr<Heard> sink) -> asio::awaitable<std::int64_t> {
      const auto id = hub->watch(key, {}, (co_await now()) + 1, sink);
      etcdctl("put " + key + " x");
      co_await require_within([&] { return sink->events.size() == 1; }, 5s, "the put's event");
      co_return id;
    };
    auto first = std::make_shared<Heard>();
    const auto id = co_await heard_put(first);
    REQUIRE(opened() == 1);
    auto hold = hub->hold_stream();
    hub->cancel(id);
    etcdctl("put " + key + " y");
    co_await sleep_for(200ms);         // without the hold, the stream is closed by now
    CHECK(first->events.size() == 1);  // its cancel waits, its events are dropped meanwhile
    auto second = std::make_shared<Heard>();
    hub->cancel(co_await heard_put(second));
    CHECK(opened() == 1);  // watched on the held stream
    hold.reset();          // the last hold: the cancel goes, the stream closes
    co_await sleep_for(200ms);
    auto third = std::make_shared<Heard>();
    hub->cancel(co_await heard_put(third));
    CHECK(opened() == 2);
    CHECK(first->events.size() == 1);
  });
}
