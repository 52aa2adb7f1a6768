// A signature means: the owner chose to end, and its work has stopped (issue 33, point 1 and
// findings 5 and 6 of reviews/safety-96145a3.md). A term that ends otherwise (its lease's local
// deadline, a lost lease, a deleted key) is removed unsigned, once its work has stopped, and
// the next candidate waits the takeover delay; an owner's stop keeps the term, renewed, until
// the work has stopped. Against the fixture's etcd 3.4.23, with the chaos suite's proxy where a
// link must be slow.
#include "chaos/proxy.hpp"
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/etcdctl.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <catch2/catch.hpp>

#include <optional>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using boost::system::system_error;
using election::Leadership;
using election::LeadershipOptions;
using election::Participant;
using election::test::fixture_options;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using election::test::unique_name;
using Steady = std::chrono::steady_clock;

namespace {

long long ms(Steady::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// A Client whose every byte passes `proxy` (to the fixture's first member).
election::ClientOptions through(const chaos::Proxy& proxy) {
  return election::test::options_via(proxy.port());
}

// A work that runs until cancelled and then takes `cleanup` to stop (a flush, a clean-up in
// flight): the cancellation does not cut that short. `stopped` is set when it returns.
Leadership::Work slow_to_stop(std::chrono::milliseconds cleanup,
                              std::optional<Steady::time_point>& stopped) {
  return [cleanup, &stopped](Participant&, const election::LeaderKey&) -> asio::awaitable<void> {
    try {
      co_await sleep_for(24h);
    } catch (const system_error&) {
    }
    co_await asio::this_coro::reset_cancellation_state();
    co_await sleep_for(cleanup);
    if (!stopped) stopped = Steady::now();
    throw system_error(asio::error::operation_aborted);
  };
}

}  // namespace

// Finding 1: the term ends at its lease's local deadline while etcd still holds the lease (a
// renewal reached etcd, its answer did not come back in time: a slow link one way). Before the
// fix the term's end signed the resignation at once and the next candidate led a few ms later,
// while the work still had 150 ms to run.
TEST_CASE("a term ended at its local deadline: the next leader waits until the work has stopped",
          "[signature]") {
  const auto name = unique_name("deadline-work");
  std::optional<Steady::time_point> a_stopped, a_overran, b_elected;
  bool a_elected = false;
  error_code a_reason;
  run(
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        chaos::Proxy proxy(ex, election::test::tcp_endpoint(fixture_options().endpoints.front()));
        election::Client a_client(ex, through(proxy));
        election::Client b_client(ex, fixture_options());
        LeadershipOptions options;
        options.participant.ttl = 5s;
        options.participant.takeover_delay = 200ms;
        options.retry_initial = 50ms;
        options.retry_max = 200ms;
        election::LeadershipHooks hooks;
        hooks.elected = [&](const election::LeaderKey&) { a_elected = true; };
        hooks.work_overran = [&](const election::LeaderKey&) {
          if (!a_overran) a_overran = Steady::now();
        };
        hooks.lost = [&](const election::LeadershipLost& lost) {
          if (!a_reason) a_reason = lost.reason;
        };
        Leadership a(a_client, name, "a", slow_to_stop(150ms, a_stopped), options, hooks);
        bool a_done = false;
        a.async_run([&](error_code) { a_done = true; });
        co_await require_within([&] { return a_elected; }, 10s, "a to lead");

        Participant b(b_client, name, "b", options.participant);
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
              co_await b.campaign();
              b_elected = Steady::now();
            },
            asio::detached);
        co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
        co_await sleep_for(300ms);

        // a's requests reach etcd at once, its answers come 8 s late: etcd renews a's lease,
        // a hears of no renewal and its local deadline passes.
        proxy.set_delays(0ms, 8s);
        co_await require_within([&] { return b_elected.has_value(); }, 15s, "b to lead");
        co_await require_within([&] { return a_stopped.has_value(); }, 5s, "a's work to stop");

        proxy.set_delays(0ms, 0ms);
        a.stop();
        co_await require_within([&] { return a_done; }, 10s, "a's run() to end");
        co_await b.resign();
      },
      60s);
  REQUIRE(a_stopped);
  REQUIRE(b_elected);
  INFO("a's term ended with " << a_reason.message() << "; b led " << ms(*b_elected - *a_stopped)
                              << " ms after a's work stopped");
  CHECK(a_reason == election::errc::lease_deadline_passed);
  // Either the next leader came after the work had stopped, or the overrun was reported first.
  const bool apart = *b_elected > *a_stopped || (a_overran && *a_overran <= *b_elected);
  CHECK(apart);
  // After a stop it did not choose, nothing is signed: the successor waited the delay after
  // the key went, which was after the work had stopped.
  CHECK(*b_elected - *a_stopped >= 150ms);
  CHECK_FALSE(a_overran);
}

// Finding 6: stop() cancels the work, but the term goes on, its key held and renewed, until the
// work has stopped; the clean-up is no overrun, however long, and the metrics still say leader.
TEST_CASE("stop(): a clean-up longer than the TTL while the key is held is no overrun",
          "[signature]") {
  const auto name = unique_name("stop-cleanup");
  std::optional<Steady::time_point> stopped;
  int overruns = 0;
  std::vector<election::LeadershipLost> lost;
  int polls_leading = 0, polls_leading_but_not_in_metrics = 0, polls_leading_unhealthy = 0;
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        LeadershipOptions options;
        options.participant.ttl = 2s;
        election::LeadershipHooks hooks;
        bool elected = false;
        hooks.elected = [&](const election::LeaderKey&) { elected = true; };
        hooks.work_overran = [&](const election::LeaderKey&) { ++overruns; };
        hooks.lost = [&](const election::LeadershipLost& l) { lost.push_back(l); };
        Leadership leadership(client, name, "a", slow_to_stop(3s, stopped), options, hooks);
        bool done = false;
        error_code outcome;
        leadership.async_run([&](error_code ec) {
          done = true;
          outcome = ec;
        });
        co_await require_within([&] { return elected; }, 10s, "the win");
        co_await sleep_for(500ms);
        leadership.stop();
        while (!done) {
          co_await sleep_for(100ms);
          if (leadership.participant().is_leader()) {
            ++polls_leading;
            if (!leadership.metrics().is_leader) ++polls_leading_but_not_in_metrics;
            if (!leadership.health().healthy) ++polls_leading_unhealthy;
          }
        }
        CHECK_FALSE(outcome);
      },
      30s);
  REQUIRE(stopped);
  CHECK(polls_leading >= 20);  // the 3 s clean-up ran while the key was held
  CHECK(overruns == 0);
  CHECK(polls_leading_but_not_in_metrics == 0);
  CHECK(polls_leading_unhealthy == 0);
  REQUIRE(lost.size() == 1);
  CHECK(lost[0].reason == boost::asio::error::operation_aborted);
  CHECK(lost[0].work_stopped_in_time);
}

// Finding 5: the signed resignation's Txn is applied but its answer is lost (the attempt's
// deadline passes on a slow link); the next attempt's guard fails. Before the fix the signature
// stayed on the Session's live lease.
TEST_CASE("a Session's signed resignation whose answer was lost leaves no signature",
          "[signature]") {
  const auto name = unique_name("signature-lost-answer");
  run(
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        chaos::Proxy proxy(ex, election::test::tcp_endpoint(fixture_options().endpoints.front()));
        election::Client client(ex, through(proxy));
        election::Client observer(ex, fixture_options());
        election::Session session(client);
        Participant p(session, name, "v");
        co_await p.campaign();
        REQUIRE(p.is_leader());

        proxy.set_delay(400ms);  // a round trip of 800 ms: longer than an attempt's 500
        bool resigned = false;
        error_code resign_error;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
              resign_error = co_await election::test::error_of([&] { return p.resign(); });
              resigned = true;
            },
            asio::detached);
        co_await sleep_for(2500ms);
        proxy.set_delay(0ms);
        co_await require_within([&] { return resigned; }, 10s, "resign() to return");
        CHECK_FALSE(resign_error);
        const auto keys = co_await election::test::keys_of(observer, name);
        const int signatures = co_await election::test::signatures_of(observer, name);
        CHECK(keys.empty());
        CHECK(signatures == 0);
        // The session's lease lives on: only the key and its signature went.
        CHECK(session.lease_id().has_value());
      },
      30s);
}

// Issue 33, point 5: every hold of a lock gets a fence greater than every earlier one's. A hold
// lost at its lease's local deadline keeps its key (renewed no more) until the owner says the
// work under it stopped; the next lock() on the same Session lease must not take that key back
// as its own (its create revision is the old hold's fence) but put a new one in line.
TEST_CASE("a lock taken again after a hold lost at its deadline has a greater fence",
          "[signature]") {
  const auto name = unique_name("fence-after-loss");
  std::int64_t first = 0, second = 0;
  error_code why;
  std::size_t keys_after = 0;
  run(
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        chaos::Proxy proxy(ex, election::test::tcp_endpoint(fixture_options().endpoints.front()));
        election::Client client(ex, through(proxy));
        election::Client observer(ex, fixture_options());
        election::Session session(client, {.ttl = 5s});
        election::Mutex lock(session, name, {.takeover_delay = 200ms});
        first = (co_await lock.lock()).create_revision;
        proxy.set_delays(0ms, 8s);  // renewed in etcd, never in time here: the deadline passes
        why = co_await lock.wait_lost();
        proxy.set_delays(0ms, 0ms);
        second = (co_await lock.lock()).create_revision;
        const auto keys = co_await election::test::keys_of(observer, name);
        keys_after = keys.size();
        co_await lock.unlock();
      },
      60s);
  CHECK(why == election::errc::lease_deadline_passed);
  CHECK(second > first);
  CHECK(keys_after == 1);
}

// try_lock() answering lock_held leaves no key in the queue when it returns: it waits for etcd
// to confirm the withdrawal (a slow link makes that take a round trip of 600 ms).
TEST_CASE("try_lock() that finds the lock held returns with its key gone", "[signature]") {
  const auto name = unique_name("try-lock-gone");
  error_code tried;
  std::vector<std::string> left;
  run(
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        chaos::Proxy proxy(ex, election::test::tcp_endpoint(fixture_options().endpoints.front()));
        election::Client holder_client(ex, fixture_options());
        election::Client client(ex, through(proxy));
        election::Mutex holder(holder_client, name);
        co_await holder.lock();
        proxy.set_delay(300ms);
        election::Mutex other(client, name, {.takeover_delay = 200ms});
        tried = co_await election::test::error_of([&] { return other.try_lock(); });
        left = co_await election::test::keys_of(holder_client, name);
        co_await holder.unlock();
      },
      30s);
  CHECK(tried == election::errc::lock_held);
  CHECK(left.size() == 1);  // the holder's own key only
}

// A Leadership signs once its work has stopped: a work that returns hands over without the
// takeover delay. A resign() from inside the work, while it still runs, is no word that it has
// stopped: unsigned, and the next candidate waits the delay.
TEST_CASE("a Leadership's work that returns hands over signed, one that resigns itself does not",
          "[signature]") {
  const auto run_case = [](bool resign_inside) {
    const auto name = unique_name(resign_inside ? "work-resigns" : "work-returns");
    std::optional<std::chrono::milliseconds> waited;
    run(
        [&]() -> asio::awaitable<void> {
          const auto ex = co_await asio::this_coro::executor;
          election::Client a_client(ex, fixture_options());
          election::Client b_client(ex, fixture_options());
          election::ParticipantOptions options;
          options.takeover_delay = 300ms;
          Participant b(b_client, name, "b", options);
          bool go = false;
          auto work = [&](Participant& me, const election::LeaderKey&) -> asio::awaitable<void> {
            co_await election::test::require_within([&] { return go; }, 10s, "b in line");
            if (resign_inside) {
              co_await me.resign();
              co_await sleep_for(24h);  // cancelled now that the leadership ended
            }
          };
          LeadershipOptions lo;
          lo.participant = options;
          bool elected = false;
          election::LeadershipHooks hooks;
          hooks.elected = [&](const election::LeaderKey&) { elected = true; };
          Leadership a(a_client, name, "a", work, lo, hooks);
          bool done = false;
          a.async_run([&](error_code) { done = true; });
          co_await require_within([&] { return elected; }, 10s, "a to lead");
          std::optional<election::LeaderKey> b_key;
          asio::co_spawn(
              ex, [&]() -> asio::awaitable<void> { b_key = co_await b.campaign(); },
              asio::detached);
          co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
          co_await sleep_for(300ms);
          go = true;
          co_await require_within([&] { return b_key.has_value(); }, 10s, "b to lead");
          waited = b.takeover_wait();
          a.stop();
          co_await require_within([&] { return done; }, 10s, "a's run() to end");
          co_await b.resign();
        },
        40s);
    return waited;
  };
  const auto signed_wait = run_case(false);
  const auto unsigned_wait = run_case(true);
  REQUIRE(signed_wait);
  REQUIRE(unsigned_wait);
  CHECK(*signed_wait == 0ms);
  CHECK(*unsigned_wait > 200ms);
}
