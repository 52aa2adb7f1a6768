// Watches and observers when the history they would resume from has been compacted away.
#include "api/access.hpp"
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"
#include "transport/client_core.hpp"
#include "transport/watch_hub.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;
using election::errc;
using election::test::options_for;
using election::test::run;

namespace {

void compact(const std::string& endpoint, std::int64_t revision) {
  const auto command = "ETCDCTL_API=3 etcdctl --endpoints=" + endpoint + " compact " +
                       std::to_string(revision) + " >/dev/null";
  REQUIRE(std::system(command.c_str()) == 0);
}

}  // namespace

namespace {

// What a WatchHub watch hears.
struct Heard : election::detail::WatchSink {
  std::vector<mvccpb::Event> events;
  std::int64_t compacted_at = 0;
  boost::system::error_code refused;
  void on_events(std::vector<mvccpb::Event> e) override {
    for (auto& x : e) events.push_back(std::move(x));
  }
  void on_compacted(std::int64_t revision) override { compacted_at = revision; }
  void on_refused(boost::system::error_code reason, const std::string&) override {
    refused = reason;
  }
  void on_interrupted() override { interrupted = true; }
  bool interrupted = false;
};

}  // namespace

TEST_CASE("a watch from a compacted revision is told so, and one from after it sees the events",
          "[watch][compaction]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor,
                            options_for(election::test::fixture_endpoints()));
    const auto key = election::test::unique_name("compacted-watch");
    election::ParticipantOptions options;
    options.ttl = 5s;
    election::Participant p(client, key, "v", options);
    co_await p.campaign();
    const auto first = co_await p.put_if_leader(key + "-data", "1");
    const auto last = co_await p.put_if_leader(key + "-data", "2");
    compact(client.options().endpoints.front(), last);
    const auto& core = election::detail::access::core(client);
    auto hub = election::detail::WatchHub::of(core);
    auto old = std::make_shared<Heard>();
    auto fresh = std::make_shared<Heard>();
    hub->watch(key + "-data", {}, first, old);  // over once compacted
    const auto watching = hub->watch(key + "-data", {}, last, fresh);
    co_await election::test::require_within(
        [&] { return old->compacted_at != 0 && !fresh->events.empty(); }, 5s,
        "the compaction to be told and the last write to be seen");
    CHECK(old->compacted_at == last);
    CHECK(old->events.empty());
    REQUIRE(fresh->events.size() == 1);
    CHECK(fresh->events[0].kv().value() == "2");
    CHECK_FALSE(fresh->refused);
    hub->cancel(watching);
    co_await p.resign();
  });
}

TEST_CASE("an observer cut off during a compaction reports the current leader once",
          "[observe][compaction][cluster]") {
  auto dir = std::filesystem::path(ELECTION_TEST_WORK_DIR) /
             ("observe-compaction-" + std::to_string(::getpid()));
  auto etcd = election::test::EtcdCluster::start(dir, 3);
  run(
      [&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        // The observer talks only to a follower, the participant only to another member, so
        // the cluster keeps its raft leader while the observer's member is frozen.
        const int leader = etcd.raft_leader();
        REQUIRE(leader >= 0);
        const int cut = (leader + 1) % 3, other = (leader + 2) % 3;
        election::Client watcher(executor, options_for({etcd.endpoint(cut)}));
        election::Client writer(executor, options_for({etcd.endpoint(other)}));
        const auto name = election::test::unique_name("observe-compaction");
        election::Observer observer(watcher, name);
        election::ParticipantOptions options;
        options.ttl = 10s;
        election::Participant a(writer, name, "v0", options);
        co_await a.campaign();
        auto current = co_await observer.next();
        if (!current.has_leader()) current = co_await observer.next();  // "no leader" came first
        REQUIRE(current.has_leader());
        CHECK(current.leader->value == "v0");

        etcd.freeze(cut);  // the observer's member hears nothing from here on
        for (int i = 1; i <= 3; ++i) co_await a.proclaim("v" + std::to_string(i));
        const auto revision = co_await a.put_if_leader(name + "-data", "x");
        compact(etcd.endpoint(other), revision);
        etcd.kill_member(cut);
        etcd.start_member(cut);

        // If the restarted member has applied the compaction when the observer's watch resumes,
        // v1 and v2 are gone with the history and the observer reports the leader now (v3)
        // once; if the watch resumes while that member is still replaying its log, the history
        // is still there and it reports v1, v2, v3. Either way: in order, no value twice,
        // ending at v3.
        std::vector<std::string> seen;
        while (seen.empty() || seen.back() != "v3") {
          auto after = co_await observer.next();
          REQUIRE(after.has_leader());
          CHECK(after.leader->create_revision == current.leader->create_revision);
          seen.push_back(after.leader->value);
          REQUIRE(seen.size() <= 3);
        }
        INFO("seen after the compaction: " << seen.size() << " event(s)");
        for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i - 1] < seen[i]);
        asio::steady_timer timer(executor, 500ms);
        auto quiet = co_await (observer.next() || timer.async_wait(asio::use_awaitable));
        CHECK(quiet.index() == 1);
        co_await a.resign();
      },
      60s);
}
