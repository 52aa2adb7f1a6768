// A win that survives etcd 3.4.23's watch bugs (issue 33, point 3; finding 3 of
// reviews/safety-96145a3.md). Debian's etcd drops the DELETE at the revision a resumed watch
// starts from when that revision was compacted (etcd #18089, #19179), and skips the compaction
// notice of a watcher whose stream's channel is full (#17555). A watch that cannot go on exactly
// where it was (re-created on a new stream) must count as a gap, and a gap is closed by a read.
// Both schedules run on a private etcd (compactions at chosen revisions); the candidate's link
// is cut and healed by the chaos suite's proxy instead of freezing its process.
#include "chaos/proxy.hpp"
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/etcdctl.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <catch2/catch.hpp>

#include <deque>
#include <filesystem>
#include <optional>
#include <regex>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using election::Participant;
using election::test::etcdctl;
using election::test::etcdctl_output;
using election::test::options_for;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using Steady = std::chrono::steady_clock;

namespace {

std::filesystem::path etcd_dir(const std::string& name) {
  return std::filesystem::path(ELECTION_TEST_WORK_DIR) /
         (name + "-" + std::to_string(::getpid()));
}

// The revision of etcd's answer to `etcdctl ARGS -w json`.
std::int64_t revision_of(const std::string& endpoint, const std::string& args) {
  const auto out = etcdctl_output(endpoint, args + " -w json");
  std::smatch m;
  static const std::regex revision("\"revision\":([0-9]+)");
  if (!std::regex_search(out, m, revision)) FAIL("no revision in etcdctl's answer: " << out);
  return std::stoll(m[1]);
}

// Counts the Watch streams a Client's hub has had answer (ClientEvent::Kind::watch_stream).
struct Streams {
  int answered = 0;
  election::ClientOptions options(election::ClientOptions o) {
    o.on_event = [this](const election::ClientEvent& e) {
      if (e.kind == election::ClientEvent::Kind::watch_stream) ++answered;
    };
    return o;
  }
};

}  // namespace

// The review's schedule, with the proxy in place of SIGSTOP and a restart: `E/0` first, then
// b, then c in line; b's link is cut (its watch stream breaks); an operator deletes b's key (at
// N) and `E/0` (N + 1); c leads; etcd is compacted at N; b's link heals. b's watch resumes from
// N, and 3.4.23 leaves the DELETE at N out: before the fix b won with a key etcd had deleted,
// while c led.
TEST_CASE("a candidate whose key was deleted at a compacted revision is not told it leads",
          "[watch-gap]") {
  auto etcd = election::test::EtcdCluster::start(etcd_dir("watch-gap-own"), 1);
  const auto endpoint = etcd.endpoint(0);
  const auto name = election::test::unique_name("gap-own");
  std::optional<Steady::time_point> b_won, c_won;
  std::optional<election::LeaderKey> b_key;
  run(
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        chaos::Proxy proxy(ex, election::test::tcp_endpoint(endpoint));
        Streams streams;
        election::Client b_client(
            ex, streams.options(election::test::options_via(proxy.port())));
        election::Client c_client(ex, election::test::options_at(endpoint));
        election::ParticipantOptions options;
        options.ttl = 10s;
        options.takeover_delay = 200ms;
        REQUIRE(etcdctl(endpoint, "put " + name + "/0 head") == 0);
        Participant b(b_client, name, "b", options);
        Participant c(c_client, name, "c", options);
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
              b_key = co_await b.campaign();
              b_won = Steady::now();
            },
            asio::detached);
        co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
        co_await sleep_for(300ms);
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
              co_await c.campaign();
              c_won = Steady::now();
            },
            asio::detached);
        co_await require_within([&] { return c.lease_id().has_value(); }, 5s, "c in line");
        co_await sleep_for(500ms);  // b's watch has delivered c's entry

        proxy.cut();
        co_await sleep_for(500ms);
        const auto b_candidate = name + "/" + election::lease_hex(*b.lease_id());
        const auto n = revision_of(endpoint, "del " + b_candidate);
        revision_of(endpoint, "del " + name + "/0");
        co_await require_within([&] { return c_won.has_value(); }, 5s, "c to lead");
        REQUIRE(etcdctl(endpoint, "compact " + std::to_string(n) + " --physical") == 0);
        const int streams_before = streams.answered;
        proxy.heal();
        co_await require_within([&] { return streams.answered > streams_before; }, 20s,
                                "b's watch stream to answer again");
        // Long enough for b to win (its delay is 200 ms) if it believed it were first.
        co_await sleep_for(3s);
        CHECK(c.is_leader());
        CHECK_FALSE(b_won.has_value());
        CHECK_FALSE(b.is_leader());

        // b is in line again (its key entered anew), behind c: it leads once c resigns.
        co_await c.resign();
        co_await require_within([&] { return b_won.has_value(); }, 10s, "b to lead after c");
        REQUIRE(b_key);
        CHECK(b_key->create_revision > n);
        co_await b.resign();
      },
      90s);
}

// The review's Session-scale schedule (#17555): one Client follows 600 elections on one Watch
// stream, each a Session candidate behind a plain head key. The link is cut, every head
// deleted, etcd compacted at its current revision, the link healed: hundreds of watches resume
// behind the compaction at once, and 3.4.23 drops the compaction notices that do not fit the
// stream's channel. Before the fix about 380 of the 600 elections were left without a leader,
// their feeds holding a head etcd no longer had.
TEST_CASE("600 elections on a Session whose stream broke behind a compaction all get a leader",
          "[watch-gap]") {
  constexpr int n = 600;
  auto etcd = election::test::EtcdCluster::start(etcd_dir("watch-gap-scale"), 1);
  const auto endpoint = etcd.endpoint(0);
  const auto prefix = election::test::unique_name("gap-scale");
  int won = 0;
  run(
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        chaos::Proxy proxy(ex, election::test::tcp_endpoint(endpoint));
        Streams streams;
        election::Client client(
            ex, streams.options(election::test::options_via(proxy.port())));
        election::Client direct(ex, election::test::options_at(endpoint));
        co_await direct.connect();
        auto& core = *election::detail::access::core(direct);
        const auto head = [&](int i) { return prefix + "-" + std::to_string(i) + "/0"; };
        for (int i = 0; i < n; ++i) {
          etcdserverpb::PutRequest put;
          put.set_key(head(i));
          put.set_value("head");
          co_await core.call_retrying("test", core.kv().async(), &etcdserverpb::KV::Stub::async::Put,
                                      std::move(put));
        }
        election::Session session(client);
        std::deque<Participant> participants;
        election::ParticipantOptions options;
        options.takeover_delay = 200ms;
        for (int i = 0; i < n; ++i) {
          auto& p = participants.emplace_back(session, prefix + "-" + std::to_string(i), "s",
                                              options);
          asio::co_spawn(
              ex,
              [&p, &won]() -> asio::awaitable<void> {
                co_await p.campaign();
                ++won;
              },
              asio::detached);
        }
        // Every candidate in line, and the feeds current.
        co_await require_within(
            [&] {
              for (const auto& p : participants)
                if (!p.lease_id()) return false;
              return true;
            },
            30s, "every candidate with a lease");
        co_await sleep_for(2s);
        REQUIRE(won == 0);

        proxy.cut();
        co_await sleep_for(500ms);
        for (int i = 0; i < n; ++i) {
          etcdserverpb::DeleteRangeRequest del;
          del.set_key(head(i));
          co_await core.call_retrying("test", core.kv().async(),
                                      &etcdserverpb::KV::Stub::async::DeleteRange, std::move(del));
        }
        const auto now = revision_of(endpoint, "get " + head(0));
        REQUIRE(etcdctl(endpoint, "compact " + std::to_string(now) + " --physical") == 0);
        const int streams_before = streams.answered;
        proxy.heal();
        co_await require_within([&] { return streams.answered > streams_before; }, 20s,
                                "the watch stream to answer again");
        const bool all = co_await election::test::wait_until([&] { return won == n; }, 30s);
        INFO(won << " of " << n << " elections got a leader");
        CHECK(all);
        for (auto& p : participants)
          if (p.is_leader()) co_await p.resign();
      },
      150s);
}
