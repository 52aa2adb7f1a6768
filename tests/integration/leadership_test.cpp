// election::Leadership against a real etcd: the loop that never gives up, the work it runs and
// stops, its hooks, health and metrics; and the line of candidates.
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"

#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using election::errc;
using election::Leadership;
using election::LeadershipOptions;
using election::test::fixture_options;
using election::test::options_for;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using election::test::unique_name;
using Steady = std::chrono::steady_clock;

namespace {

std::filesystem::path work_path(const std::string& name) {
  auto dir = std::filesystem::path(ELECTION_TEST_WORK_DIR);
  std::filesystem::create_directories(dir);
  return dir / (name + "-" + std::to_string(::getpid()));
}

int etcdctl(const std::string& endpoint, const std::string& args) {
  const auto command = "ETCDCTL_API=3 etcdctl --endpoints=" + endpoint + " " + args + " >/dev/null";
  return std::system(command.c_str());
}

// How many keys etcd has under `prefix` (etcdctl 3.4 has no --count-only).
int keys_under(const std::string& endpoint, const std::string& prefix) {
  const auto command = "ETCDCTL_API=3 etcdctl --endpoints=" + endpoint +
                       " get --prefix --keys-only " + prefix + "/ | grep -c .";
  std::FILE* out = ::popen(command.c_str(), "r");
  if (!out) return -1;
  int count = -1;
  if (std::fscanf(out, "%d", &count) != 1) count = -1;
  ::pclose(out);
  return count;
}

LeadershipOptions quick(std::chrono::seconds ttl) {
  LeadershipOptions o;
  o.participant.ttl = ttl;
  o.retry_initial = 50ms;
  o.retry_max = 200ms;
  return o;
}

// Everything the hooks said, in order, and where the work was when they said it.
struct Record {
  std::vector<std::string> events;  // "campaigning", "elected", "lost:REASON", "overran", ...
  std::vector<election::LeaderKey> elected;
  std::vector<election::LeadershipLost> lost;
  std::vector<election::LeaderEvent> changes;
  std::vector<election::RetryScheduled> retries;
  int work_running = 0;              // works started and not yet stopped
  std::vector<int> running_at_loss;  // work_running when each `lost` came
  std::vector<int> running_at_overrun;

  election::LeadershipHooks hooks() {
    election::LeadershipHooks h;
    h.campaigning = [this](const election::CampaignStarted&) { events.push_back("campaigning"); };
    h.elected = [this](const election::LeaderKey& k) {
      events.push_back("elected");
      elected.push_back(k);
    };
    h.lost = [this](const election::LeadershipLost& l) {
      events.push_back("lost:" + election::reason_name(l.reason));
      lost.push_back(l);
      running_at_loss.push_back(work_running);
    };
    h.work_overran = [this](const election::LeaderKey&) {
      events.push_back("overran");
      running_at_overrun.push_back(work_running);
    };
    h.leader_changed = [this](const election::LeaderEvent& e) { changes.push_back(e); };
    h.retrying = [this](const election::RetryScheduled& r) {
      events.push_back("retrying");
      retries.push_back(r);
    };
    return h;
  }
};

// Marks the work running for its scope.
struct Running {
  explicit Running(Record& r) : r(r) { ++r.work_running; }
  ~Running() { --r.work_running; }
  Record& r;
};

// Work that runs until cancelled.
Leadership::Work forever(Record& record) {
  return [&record](election::Participant&, const election::LeaderKey&) -> asio::awaitable<void> {
    Running running(record);
    co_await sleep_for(24h);
  };
}

// Starts run() with a callback that records its outcome.
struct Outcome {
  bool done = false;
  error_code ec;
  election::diagnostics diag;
};

void start(Leadership& l, Outcome& out) {
  l.async_run(out.diag, [&out](error_code ec) {
    out.done = true;
    out.ec = ec;
  });
}

}  // namespace

TEST_CASE("a Leadership campaigns again after every lost leadership, and stop() resigns",
          "[leadership]") {
  const auto name = unique_name("leadership-again");
  const auto endpoint = fixture_options().endpoints.front();
  Record record;
  Outcome outcome;
  run([&]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    Leadership leadership(client, name, "node-a", forever(record), quick(2s), record.hooks());
    start(leadership, outcome);
    co_await require_within([&] { return record.elected.size() == 1; }, 10s, "the first win");
    CHECK(leadership.participant().is_leader());
    CHECK(leadership.health().state == election::Health::State::leading);

    // An operator deletes the leader key: the leadership ends, the loop campaigns again.
    CHECK(etcdctl(endpoint, "del " + record.elected[0].key) == 0);
    co_await require_within([&] { return record.elected.size() == 2; }, 10s, "a win after del");
    // Then revokes the lease.
    CHECK(etcdctl(endpoint, "lease revoke " + election::lease_hex(record.elected[1].lease)) == 0);
    co_await require_within([&] { return record.elected.size() == 3; }, 10s,
                            "a win after the revoke");
    const auto metrics = leadership.metrics();
    CHECK(metrics.is_leader);
    CHECK(metrics.terms_won == 3);
    // A revoked lease takes its key with it: the watch may tell first (key-deleted), or the
    // keep-alive (lease-expired).
    const auto ends = [&](const char* r) {
      return metrics.ends_by_reason.count(r) ? metrics.ends_by_reason.at(r) : 0;
    };
    CHECK(ends("key-deleted") + ends("lease-expired") == 2);
    CHECK(ends("key-deleted") >= 1);
    CHECK(metrics.since_renewal < 2s);
    CHECK(metrics.observer_events >= 3);

    leadership.stop();
    co_await require_within([&] { return outcome.done; }, 5s, "run() to end after stop()");
    CHECK_FALSE(leadership.participant().is_leader());
    CHECK(leadership.health().state == election::Health::State::stopped);
    CHECK_FALSE(leadership.metrics().is_leader);
  });
  CHECK_FALSE(outcome.ec);
  REQUIRE(record.lost.size() == 3);
  CHECK(record.lost[0].reason == errc::key_deleted);
  const bool revoked =
      record.lost[1].reason == errc::lease_expired || record.lost[1].reason == errc::key_deleted;
  CHECK(revoked);
  const auto second_end = "lost:" + election::reason_name(record.lost[1].reason);
  CHECK(record.lost[2].reason == boost::asio::error::operation_aborted);
  // Each loss was reported once its work had stopped, and each win came after a campaign.
  CHECK(record.running_at_loss == std::vector<int>{0, 0, 0});
  CHECK(record.events == std::vector<std::string>{"campaigning", "elected", "lost:key-deleted",
                                                  "campaigning", "elected", second_end,
                                                  "campaigning", "elected", "lost:shutdown"});
  // Three different leaderships, each fenced above the one before.
  CHECK(record.elected[0].create_revision < record.elected[1].create_revision);
  CHECK(record.elected[1].create_revision < record.elected[2].create_revision);
  // The observer saw the election without a leader between the terms.
  bool saw_no_leader = false;
  for (const auto& c : record.changes) saw_no_leader = saw_no_leader || !c.has_leader();
  CHECK(saw_no_leader);
  // Resigned: nothing of it is left in etcd.
  CHECK(keys_under(endpoint, name) == 0);
}

TEST_CASE("work that returns or throws ends the leadership, and the loop campaigns again",
          "[leadership]") {
  const auto name = unique_name("leadership-work-ends");
  Record record;
  Outcome outcome;
  int calls = 0;
  auto work = [&](election::Participant& me, const election::LeaderKey&) -> asio::awaitable<void> {
    Running running(record);
    const int call = ++calls;
    CHECK(me.is_leader());
    co_await sleep_for(50ms);
    if (call == 1) co_return;
    if (call == 2) throw std::runtime_error("the job failed: disk full");
    co_await sleep_for(24h);
  };
  run([&]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    Leadership leadership(client, name, "node-a", work, quick(2s), record.hooks());
    start(leadership, outcome);
    co_await require_within([&] { return record.elected.size() == 3; }, 10s, "three wins");
    const auto metrics = leadership.metrics();
    CHECK(metrics.ends_by_reason.at("work-finished") == 1);
    CHECK(metrics.ends_by_reason.at("work-failed") == 1);
    leadership.stop();
    co_await require_within([&] { return outcome.done; }, 5s, "run() to end");
  });
  CHECK_FALSE(outcome.ec);
  REQUIRE(record.lost.size() == 3);
  CHECK(record.lost[0].reason == errc::work_finished);
  CHECK(record.lost[1].reason == errc::work_failed);
  CHECK(record.lost[1].message.find("disk full") != std::string::npos);
  CHECK(record.running_at_loss == std::vector<int>{0, 0, 0});
}

TEST_CASE("stop() while leading: the work stops, and the next candidate leads at once",
          "[leadership]") {
  const auto name = unique_name("leadership-stop");
  Record a_record, b_record;
  Outcome a_out, b_out;
  Steady::time_point stopped_at, b_won_at;
  run([&]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    election::Client a_client(executor, fixture_options());
    election::Client b_client(executor, fixture_options());
    // A long TTL: only the resignation can let b in this soon.
    auto hooks = b_record.hooks();
    hooks.elected = [&](const election::LeaderKey& k) {
      b_won_at = Steady::now();
      b_record.elected.push_back(k);
    };
    Leadership a(a_client, name, "a", forever(a_record), quick(30s), a_record.hooks());
    start(a, a_out);
    co_await require_within([&] { return a_record.elected.size() == 1; }, 10s, "a to lead");
    Leadership b(b_client, name, "b", forever(b_record), quick(30s), hooks);
    start(b, b_out);
    co_await require_within([&] { return b_record.changes.size() == 1; }, 10s, "b to observe");
    REQUIRE(b_record.changes[0].has_leader());
    CHECK(b_record.changes[0].leader->value == "a");
    co_await sleep_for(300ms);
    // Waiting in line is healthy.
    const auto waiting = b.health();
    CHECK(waiting.healthy);
    CHECK(waiting.state == election::Health::State::campaigning);

    stopped_at = Steady::now();
    a.stop();
    co_await require_within([&] { return b_record.elected.size() == 1; }, 5s, "b to lead");
    co_await require_within([&] { return a_out.done; }, 5s, "a's run() to end");
    b.stop();
    co_await require_within([&] { return b_out.done; }, 5s, "b's run() to end");
  });
  CHECK_FALSE(a_out.ec);
  CHECK_FALSE(b_out.ec);
  REQUIRE(a_record.lost.size() == 1);
  CHECK(a_record.lost[0].reason == boost::asio::error::operation_aborted);
  CHECK(a_record.running_at_loss == std::vector<int>{0});
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(b_won_at - stopped_at);
  INFO("b led " << took.count() << " ms after a.stop()");
  CHECK(b_won_at - stopped_at < 2s);
}

TEST_CASE("work that ignores its cancellation is reported by the hook, a metric and health",
          "[leadership]") {
  const auto name = unique_name("leadership-overrun");
  const auto endpoint = fixture_options().endpoints.front();
  Record record;
  Outcome outcome;
  bool overran_unhealthy = false;
  std::string overran_reason;
  auto work = [&](election::Participant&, const election::LeaderKey&) -> asio::awaitable<void> {
    Running running(record);
    if (record.elected.size() > 1) {
      co_await sleep_for(24h);
      co_return;
    }
    bool cancelled = false;
    try {
      co_await sleep_for(24h);
    } catch (const boost::system::system_error&) {
      cancelled = true;
    }
    // The mistake: it carries on after its cancellation, past the lease's TTL.
    if (cancelled) {
      co_await asio::this_coro::reset_cancellation_state();
      co_await sleep_for(3500ms);
    }
  };
  Leadership* leadership = nullptr;
  run([&]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    auto hooks = record.hooks();
    hooks.work_overran = [&](const election::LeaderKey&) {
      record.events.push_back("overran");
      record.running_at_overrun.push_back(record.work_running);
      const auto h = leadership->health();
      overran_unhealthy = !h.healthy;
      overran_reason = h.reason;
    };
    Leadership l(client, name, "a", work, quick(2s), hooks);
    leadership = &l;
    start(l, outcome);
    co_await require_within([&] { return record.elected.size() == 1; }, 10s, "the win");
    co_await sleep_for(500ms);
    const auto ended_at = Steady::now();
    CHECK(etcdctl(endpoint, "del " + record.elected[0].key) == 0);
    co_await require_within([&] { return !record.running_at_overrun.empty(); }, 5s,
                            "the overrun to be reported");
    // From the moment another candidate could lead: the key is gone, so once the takeover
    // delay for an unsigned deletion has passed (200 ms on this etcd), long before the TTL.
    const auto overran_after = Steady::now() - ended_at;
    INFO("overrun reported "
         << std::chrono::duration_cast<std::chrono::milliseconds>(overran_after).count()
         << " ms after the deletion");
    CHECK(overran_after >= l.participant().takeover_delay().value());
    CHECK(overran_after < 500ms);
    CHECK(l.metrics().work_overruns == 1);
    CHECK_FALSE(l.health().healthy);
    co_await require_within([&] { return record.lost.size() == 1; }, 5s, "the late loss");
    CHECK(l.health().healthy);
    co_await require_within([&] { return record.elected.size() == 2; }, 10s, "the next win");
    l.stop();
    co_await require_within([&] { return outcome.done; }, 5s, "run() to end");
  });
  CHECK(record.running_at_overrun == std::vector<int>{1});
  CHECK(overran_unhealthy);
  CHECK(overran_reason.find("after its leadership ended") != std::string::npos);
  REQUIRE(record.lost.size() == 2);
  CHECK(record.lost[0].reason == errc::key_deleted);
  CHECK_FALSE(record.lost[0].work_stopped_in_time);
  CHECK(record.lost[1].work_stopped_in_time);
  CHECK(record.running_at_loss == std::vector<int>{0, 0});
}

TEST_CASE("health: a leader whose executor is blocked turns unhealthy, from another thread",
          "[leadership]") {
  const auto name = unique_name("leadership-blocked");
  asio::io_context io;
  election::Client client(io.get_executor(), fixture_options());
  Record record;
  std::atomic<bool> blocking{false};
  auto work = [&](election::Participant&, const election::LeaderKey&) -> asio::awaitable<void> {
    Running running(record);
    if (record.elected.size() == 1) {
      co_await sleep_for(300ms);
      // The mistake: a blocking call on the executor the keep-alive runs on.
      blocking = true;
      std::this_thread::sleep_for(3s);
      blocking = false;
    }
    co_await sleep_for(24h);
  };
  Leadership leadership(client, name, "a", work, quick(2s), record.hooks());
  auto done = leadership.async_run(asio::use_future);
  std::thread runner([&] { io.run(); });
  // Polled from this thread, while the executor is blocked.
  const auto until = Steady::now() + 15s;
  while (!blocking && Steady::now() < until) std::this_thread::sleep_for(5ms);
  REQUIRE(blocking);
  CHECK(leadership.health().healthy);
  election::Health seen;
  while (blocking && seen.healthy) {
    seen = leadership.health();
    std::this_thread::sleep_for(20ms);
  }
  CHECK_FALSE(seen.healthy);
  CHECK(seen.state == election::Health::State::leading);
  CHECK(seen.reason.find("no renewal has been answered") != std::string::npos);
  // Unblocked, the loop ends that leadership (its deadline passed) and leads again.
  const auto second = Steady::now() + 15s;
  while (leadership.metrics().terms_won < 2 && Steady::now() < second)
    std::this_thread::sleep_for(20ms);
  CHECK(leadership.metrics().terms_won >= 2);
  CHECK(leadership.metrics().ends_by_reason.at("deadline-passed") == 1);
  CHECK(leadership.health().healthy);
  leadership.stop();
  CHECK(done.wait_for(10s) == std::future_status::ready);
  CHECK_NOTHROW(done.get());
  io.stop();
  runner.join();
}

TEST_CASE("health: campaigning that keeps failing turns unhealthy after failing_for",
          "[leadership]") {
  election::ClientOptions options = options_for({"127.0.0.1:1"});
  options.connect_timeout = 200ms;
  Record record;
  Outcome outcome;
  run([&]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, options);
    auto o = quick(2s);
    o.failing_for = 1s;
    Leadership leadership(client, unique_name("leadership-failing"), "a", forever(record), o,
                          record.hooks());
    start(leadership, outcome);
    co_await require_within([&] { return !leadership.health().healthy; }, 10s,
                            "health to turn unhealthy");
    const auto h = leadership.health();
    CHECK(h.reason.find("campaigning has failed for") != std::string::npos);
    CHECK(h.reason.find("127.0.0.1:1") != std::string::npos);
    // It never gives up on its own: still retrying.
    CHECK_FALSE(outcome.done);
    CHECK(record.retries.size() >= 2);
    CHECK(leadership.metrics().retried_errors == record.retries.size());
    leadership.stop();
    co_await require_within([&] { return outcome.done; }, 5s, "run() to end");
  });
  CHECK_FALSE(outcome.ec);
  REQUIRE_FALSE(record.retries.empty());
  CHECK(record.retries[0].error == errc::unreachable);
  CHECK(record.retries[0].next_attempt_in <= 200ms);
}

TEST_CASE("an error that needs a person ends run() with it, after cleaning up", "[leadership]") {
  Record record;
  Outcome outcome;
  run([&]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    // etcd's largest TTL is 9'000'000'000 s: a larger one is refused at the grant.
    auto o = quick(2s);
    o.participant.ttl = std::chrono::seconds(9'000'000'001);
    Leadership leadership(client, unique_name("leadership-refused"), "a", forever(record), o,
                          record.hooks());
    start(leadership, outcome);
    co_await require_within([&] { return outcome.done; }, 10s, "run() to end by itself");
  });
  CHECK(outcome.ec == errc::ttl_refused);
  CHECK(outcome.diag.message().find("TTL") != std::string::npos);
  CHECK(record.retries.empty());
}

TEST_CASE("bad Leadership options are refused, naming the option", "[leadership]") {
  asio::io_context io;
  election::Client client(io.get_executor(), options_for({"127.0.0.1:1"}));
  Record record;
  const auto refused = [&](LeadershipOptions o, Leadership::Work work = {}) -> std::string {
    if (!work) work = forever(record);
    try {
      Leadership l(client, unique_name("leadership-bad"), "a", work, o);
    } catch (const election::error& e) {
      if (e.code() != errc::invalid_argument) return "wrong code: " + e.code().message();
      return e.what();
    }
    return "accepted";
  };
  LeadershipOptions o;
  o.retry_initial = 0ms;
  CHECK(refused(o).find("retry_initial") != std::string::npos);
  o = {};
  o.retry_initial = 2s;
  o.retry_max = 1s;
  CHECK(refused(o).find("retry_max") != std::string::npos);
  o = {};
  o.participant.ttl = 10s;
  o.renewal_stale_after = 5s;
  CHECK(refused(o).find("renewal_stale_after") != std::string::npos);
  o = {};
  o.failing_for = 0ms;
  CHECK(refused(o).find("failing_for") != std::string::npos);
  o = {};
  CHECK_THROWS_WITH(Leadership(client, "x", "a", Leadership::Work{}, o),
                    Catch::Contains("no work"));
  CHECK_THROWS_AS(Leadership(client, "", "a", forever(record), o), election::error);
  // A second run() while one runs.
  Leadership l(client, unique_name("leadership-twice"), "a", forever(record));
  error_code first, second;
  l.async_run([&](error_code ec) { first = ec; });
  l.async_run([&](error_code ec) {
    second = ec;
    l.stop();
  });
  io.run_for(5s);
  CHECK(second == errc::invalid_argument);
  CHECK_FALSE(first);
}

TEST_CASE("Client metrics count renewals, their round trips and the streams", "[leadership]") {
  const auto name = unique_name("leadership-metrics");
  Record record;
  Outcome outcome;
  run([&]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    Leadership leadership(client, name, "a", forever(record), quick(2s), record.hooks());
    start(leadership, outcome);
    co_await require_within([&] { return record.elected.size() == 1; }, 10s, "the win");
    co_await sleep_for(2500ms);  // a renewal every TTL/3
    const auto m = client.metrics();
    CHECK(m.renewals_answered >= 3);
    CHECK(m.renewals_sent >= m.renewals_answered);
    CHECK(m.renewal_seconds.count == m.renewals_answered);
    CHECK(m.renewal_seconds.sum > 0);
    CHECK(m.renewal_seconds.buckets.back() == m.renewal_seconds.count);
    CHECK(m.keep_alive_streams >= 1);
    CHECK(m.watch_streams >= 1);
    CHECK(m.leases == 1);
    CHECK(m.watches >= 1);
    CHECK(leadership.metrics().time_in_line > 0ns);
    leadership.stop();
    co_await require_within([&] { return outcome.done; }, 5s, "run() to end");
    co_await require_within([&] { return client.metrics().leases == 0; }, 5s,
                            "the lease to leave the keep-alive");
  });
}

TEST_CASE("a Leadership rides out an etcd restart and leads again", "[leadership][restart]") {
  auto etcd = election::test::EtcdCluster::start(work_path("leadership-restart"), 1);
  Record record;
  Outcome outcome;
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd.endpoints()));
        Leadership leadership(client, unique_name("leadership-restart"), "a", forever(record),
                              quick(2s), record.hooks());
        start(leadership, outcome);
        co_await require_within([&] { return record.elected.size() == 1; }, 10s, "the win");
        etcd.kill_member(0);
        co_await require_within([&] { return record.lost.size() == 1; }, 10s,
                                "the leadership to end without etcd");
        co_await sleep_for(1s);  // retrying meanwhile, not giving up
        CHECK_FALSE(outcome.done);
        etcd.start_member(0);
        co_await require_within([&] { return record.elected.size() == 2; }, 30s,
                                "a win after the restart");
        leadership.stop();
        co_await require_within([&] { return outcome.done; }, 5s, "run() to end");
      },
      90s);
  CHECK_FALSE(outcome.ec);
  REQUIRE_FALSE(record.lost.empty());
  CHECK(record.lost[0].reason == errc::lease_deadline_passed);
  CHECK(record.running_at_loss[0] == 0);
}

TEST_CASE("candidates: the line in order, from one read and from an Observer's feed",
          "[leadership][candidates]") {
  const auto name = unique_name("candidates");
  run([&]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    election::Client client(executor, fixture_options());
    election::Client other(executor, fixture_options());
    election::Participant a(client, name, "a", election::test::ttl(5s));
    election::Participant b(other, name, "b", election::test::ttl(5s));
    co_await a.campaign();
    // b waits in line.
    auto waiting = asio::co_spawn(executor, b.campaign(), asio::use_future);
    election::Observer observer(client, name);
    CHECK_FALSE(observer.candidates().has_value());  // nothing read yet
    co_await observer.next();
    co_await require_within(
        [&] {
          auto line = observer.candidates();
          return line && line->size() == 2;
        },
        5s, "b in the observer's line");
    const auto line = co_await a.candidates();
    REQUIRE(line.size() == 2);
    CHECK(line[0].value == "a");
    CHECK(line[1].value == "b");
    CHECK(line[0].create_revision < line[1].create_revision);
    CHECK(line[0].lease == *a.lease_id());
    CHECK(line[1].key == name + "/" + election::lease_hex(*b.lease_id()));
    CHECK(*observer.candidates() == line);
    co_await a.resign();
    co_await require_within([&] { return waiting.wait_for(0s) == std::future_status::ready; }, 5s,
                            "b to lead");
    co_await require_within(
        [&] {
          auto now = observer.candidates();
          return now && now->size() == 1 && now->front().value == "b";
        },
        5s, "the line to be b alone");
    co_await b.resign();
  });
}
