// A 3-member etcd cluster losing one member at a time: what a participant connected to all of
// them keeps. Each test starts its own cluster, since it kills and freezes members.
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <sstream>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using election::test::ttl;
using Clock = std::chrono::steady_clock;

namespace {

election::test::EtcdCluster start_cluster(const std::string& name) {
  return election::test::EtcdCluster::start(
      std::filesystem::path(ELECTION_TEST_WORK_DIR) / (name + "-" + std::to_string(::getpid())), 3);
}

election::ClientOptions options_for(const election::test::EtcdCluster& etcd) {
  return election::test::options_for(etcd.endpoints());
}

// GET http://ENDPOINT/metrics (etcd serves it on the client port), blocking; loopback only.
std::string metrics_of(const std::string& endpoint) {
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  const auto colon = endpoint.rfind(':');
  socket.connect({asio::ip::make_address(endpoint.substr(0, colon)),
                  static_cast<unsigned short>(std::stoi(endpoint.substr(colon + 1)))});
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: " + endpoint + "\r\n\r\n";
  asio::write(socket, asio::buffer(request));
  std::string reply;
  boost::system::error_code ec;  // eof: the whole reply is in
  asio::read(socket, asio::dynamic_buffer(reply), ec);
  return reply;
}

// How many calls of gRPC method `method` a member is serving now: started minus handled, from
// its Prometheus counters.
long in_flight(const std::string& metrics, const std::string& method) {
  long count = 0;
  std::istringstream lines(metrics);
  const std::string label = "grpc_method=\"" + method + "\"";
  for (std::string line; std::getline(lines, line);) {
    if (line.find(label) == std::string::npos) continue;
    const auto value = std::atol(line.substr(line.rfind(' ') + 1).c_str());
    if (line.rfind("grpc_server_started_total{", 0) == 0) count += value;
    if (line.rfind("grpc_server_handled_total{", 0) == 0) count -= value;
  }
  return count;
}

std::vector<long> in_flight_on_each(const std::vector<std::string>& endpoints,
                                    const std::string& method) {
  std::vector<long> counts;
  for (const auto& endpoint : endpoints) counts.push_back(in_flight(metrics_of(endpoint), method));
  return counts;
}


// etcd's Campaign call waits on the one member it went to; while that member hangs, the
}  // namespace

TEST_CASE("a leader keeps leading while each member in turn crashes and comes back",
          "[failover][cluster]") {
  auto etcd = start_cluster("failover-kill");
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd));
        election::Participant p(client, election::test::unique_name("kill"), "a", ttl(5s));
        co_await p.campaign();
        for (int member = 0; member < 3; ++member) {
          etcd.kill_member(member);
          co_await sleep_for(6s);  // longer than the TTL: renewals must have gone elsewhere
          INFO("member " << member << " down");
          CHECK(p.is_leader());
          etcd.start_member(member);
          co_await sleep_for(1s);
        }
        CHECK(p.is_leader());
        co_await p.resign();
      },
      60s);
}

TEST_CASE("a leader keeps leading while each member in turn is frozen", "[failover][cluster]") {
  auto etcd = start_cluster("failover-freeze");
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd));
        election::Participant p(client, election::test::unique_name("freeze"), "a", ttl(5s));
        co_await p.campaign();
        for (int member = 0; member < 3; ++member) {
          // Not the raft leader: etcd 3.4.23, thawed after longer than a lease's TTL, may still
          // believe it leads and revoke leases the new raft leader renewed (etcd issues #12528
          // and #15247), which deletes the key. The chaos suite freezes raft leaders too.
          etcd.move_leader_away_from(member);
          {
            election::test::Frozen frozen(etcd.pid(member));
            co_await sleep_for(6s);
            INFO("member " << member << " frozen");
            CHECK(p.is_leader());
          }
          co_await sleep_for(2s);
        }
        CHECK(p.is_leader());
        co_await p.resign();
      },
      60s);
}

TEST_CASE("a waiting candidate and an observer carry on when a member crashes",
          "[failover][cluster]") {
  auto etcd = start_cluster("failover-waiting");
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd));
        const auto name = election::test::unique_name("waiting");
        election::Participant a(client, name, "a", ttl(5s));
        election::Participant b(client, name, "b", ttl(5s));
        election::Observer observer(client, name);
        co_await a.campaign();
        boost::system::error_code a_ended;
        asio::co_spawn(
            client.get_executor(),
            [&]() -> asio::awaitable<void> { a_ended = co_await a.keep_alive(); }, asio::detached);
        std::optional<election::LeaderKey> b_key;
        std::string b_failure;
        asio::co_spawn(
            client.get_executor(),
            [&]() -> asio::awaitable<void> { b_key = co_await b.campaign(); },
            [&](std::exception_ptr e) {
              try {
                if (e) std::rethrow_exception(e);
              } catch (const std::exception& error) {
                b_failure = error.what();
              }
            });
        auto first = co_await observer.next();
        if (!first.has_leader()) first = co_await observer.next();
        REQUIRE(first.has_leader());
        CHECK(first.leader->value == "a");

        for (int member = 0; member < 3; ++member) {
          etcd.kill_member(member);
          co_await sleep_for(2s);
          etcd.start_member(member);
        }
        INFO("a's leadership ended: " << a_ended.message());
        INFO("b's campaign failed: " << b_failure);
        CHECK(a.is_leader());
        CHECK_FALSE(b_key);
        const auto resigned = Clock::now();
        co_await a.resign();
        // Usually milliseconds. When the member serving b's campaign lost its raft leader during
        // the crashes, etcd answers only after its own request timeout (about 7 s) with a
        // "request timed out" that b retries with the same lease.
        co_await require_within([&] { return b_key.has_value(); }, 10s,
                                "b to lead after a resigned");
        const auto waited = Clock::now() - resigned;
        INFO("handover took "
             << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count() << " ms");
        CHECK(b.is_leader());
        auto next = co_await observer.next();
        REQUIRE(next.has_leader());
        CHECK(next.leader->value == "b");
        co_await b.resign();
      },
      60s);
}

// The watch a Client's Observers share can lag behind etcd (its member frozen). A candidate that
// campaigns again with its lease must not take that watch's old view of its own key, deleted
// since, for a win.
TEST_CASE("a candidate does not win on a lagging watch's view of its own deleted key",
          "[failover][cluster]") {
  auto etcd = start_cluster("failover-stale-watch");
  const auto endpoints = etcd.endpoints();
  run(
      [&]() -> asio::awaitable<void> {
        const auto executor = co_await asio::this_coro::executor;
        election::Client client(executor, options_for(etcd));
        const auto name = election::test::unique_name("stale-watch");
        // An Observer keeps the Client's watch of the election running, as a worker's does.
        // Its member must not be the raft leader: freezing that would stall every write until
        // another is elected. Round robin places the watch: start it again until it is elsewhere.
        std::optional<election::Observer> observer;
        int feed = -1;
        for (int tries = 0; tries < 12 && feed < 0; ++tries) {
          observer.reset();  // the last Observer leaving stops the watch
          co_await sleep_for(200ms);
          observer.emplace(client, name);
          co_await observer->next();
          co_await sleep_for(200ms);
          const auto before = in_flight_on_each(endpoints, "Watch");
          const int raft_leader = etcd.raft_leader();
          for (int m = 0; m < 3; ++m)
            if (before[m] == 1 && m != raft_leader) feed = m;
        }
        REQUIRE(feed >= 0);

        // The leader's own watch of its key must be on another member than the shared one.
        election::Participant p(client, name, "p", ttl(5s));
        std::optional<election::LeaderKey> old;
        for (int tries = 0; tries < 12 && !old; ++tries) {
          auto key = co_await p.campaign();
          co_await sleep_for(200ms);
          const auto now = in_flight_on_each(endpoints, "Watch");
          if (now[feed] == 1 && now[0] + now[1] + now[2] == 2)
            old = key;
          else
            co_await p.resign();
        }
        REQUIRE(old);

        std::optional<election::LeaderKey> again;
        std::string failure;
        bool done = false;
        {
          election::test::Frozen hang(etcd.pid(feed));
          const auto other = endpoints[(feed + 1) % 3];
          const auto command =
              "ETCDCTL_API=3 etcdctl --endpoints=" + other + " del " + old->key + " > /dev/null";
          REQUIRE(std::system(command.c_str()) == 0);
          const auto ended = co_await p.keep_alive();  // the leader's watch saw the deletion
          CHECK(ended == election::errc::key_deleted);
          // Same lease, same key name; the shared watch still shows the old key first.
          asio::co_spawn(
              executor, [&]() -> asio::awaitable<void> { again = co_await p.campaign(); },
              [&](std::exception_ptr e) {
                done = true;
                try {
                  if (e) std::rethrow_exception(e);
                } catch (const std::exception& error) {
                  failure = error.what();
                }
              });
          co_await sleep_for(3s);
        }
        const auto finished = [&] { return done; };
        co_await require_within(finished, 15s, "the second campaign to end");
        INFO("the second campaign failed: " << failure);
        REQUIRE(again);
        CHECK(again->key == old->key);
        CHECK(again->revision > old->revision);
        CHECK(p.is_leader());
        co_await p.resign();
      },
      90s);
}
