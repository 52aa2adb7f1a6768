// A 3-member etcd cluster losing one member at a time: what a participant connected to all of
// them keeps. Each test starts its own cluster, since it kills and freezes members.
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/process.hpp"
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
using election::first_of;

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
        // TTL 10 s: a crashed raft leader costs an election (1-2 s) and the keep-alive a new
        // stream on a live member; at TTL 5 s (a 4.5 s deadline) an ASan build in CI once lost
        // the lease to its local deadline on one of the three crashes, safely but not the point.
        election::Participant a(client, name, "a", ttl(10s));
        election::Participant b(client, name, "b", ttl(10s));
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

// A Client's one Watch stream, which its Observers, campaigns and terms share, put on a member
// that is not the raft leader: an Observer starts it, and is made again until round robin has
// placed it so. Returns that member.
asio::awaitable<int> watch_away_from_raft_leader(election::test::EtcdCluster& etcd,
                                                 election::Client& client, const std::string& name,
                                                 std::optional<election::Observer>& observer) {
  const auto endpoints = etcd.endpoints();
  for (int tries = 0; tries < 12; ++tries) {
    observer.reset();  // the last watch leaving closes the stream
    co_await sleep_for(200ms);
    observer.emplace(client, name);
    co_await observer->next();
    co_await sleep_for(200ms);
    const auto streams = in_flight_on_each(endpoints, "Watch");
    const int raft_leader = etcd.raft_leader();
    for (int m = 0; m < 3; ++m)
      if (streams[m] == 1 && m != raft_leader) co_return m;
  }
  throw std::runtime_error("the watch never landed on a member other than the raft leader");
}

// A leader in another process: a lease etcdctl grants and keeps alive, and a candidate key on it
// in etcd's own format (`name/` + the lease in hex). SIGKILL the keep-alive to crash it.
struct EtcdctlLeader {
  EtcdctlLeader(const std::string& endpoint, const std::string& name, int ttl_s,
                const std::filesystem::path& out) {
    const std::string ctl = "ETCDCTL_API=3 etcdctl --endpoints=" + endpoint + " ";
    std::FILE* grant = ::popen((ctl + "lease grant " + std::to_string(ttl_s)).c_str(), "r");
    char line[256] = {};
    if (!grant || !std::fgets(line, sizeof line, grant))
      throw std::runtime_error("etcdctl lease grant failed");
    ::pclose(grant);
    // "lease 694d7e8e2f7e3b0a granted with TTL(2s)"
    std::istringstream words(line);
    std::string word;
    words >> word >> lease;
    key = name + "/" + lease;
    if (std::system((ctl + "put --lease=" + lease + " " + key + " crasher >/dev/null").c_str()) !=
        0)
      throw std::runtime_error("etcdctl put failed");
    keep_alive.emplace(std::vector<std::string>{"etcdctl", "--endpoints=" + endpoint, "lease",
                                                "keep-alive", lease},
                       out, std::vector<std::string>{"ETCDCTL_API=3"});
  }
  void crash() { keep_alive->signal(SIGKILL); }

  std::string lease;
  std::string key;
  std::optional<election::test::ChildProcess> keep_alive;
};

// A waiting candidate learns of its turn from the Client's watch. With that watch's member
// frozen, only etcd's HTTP/2 keep-alive used to notice (8 s); the watch's progress requests find
// it out within a second and a half, and the candidate leads in TTL + a few hundred ms.
TEST_CASE("a candidate whose watch sits on a frozen member leads soon after its leader crashes",
          "[failover][cluster]") {
  auto etcd = start_cluster("failover-frozen-watch");
  run(
      [&]() -> asio::awaitable<void> {
        const auto executor = co_await asio::this_coro::executor;
        election::Client client(executor, options_for(etcd));
        const auto name = election::test::unique_name("frozen-watch");
        std::optional<election::Observer> observer;
        const int frozen_member =
            co_await watch_away_from_raft_leader(etcd, client, name, observer);

        const auto other = etcd.endpoint((frozen_member + 1) % 3);
        EtcdctlLeader leader(other, name, 2,
                             std::filesystem::path(ELECTION_TEST_WORK_DIR) /
                                 ("frozen-watch-keepalive-" + std::to_string(::getpid())));
        election::Participant b(client, name, "b", ttl(2s));
        std::optional<election::LeaderKey> won;
        auto campaign = [&]() -> asio::awaitable<void> { won = co_await b.campaign(); };
        asio::co_spawn(executor, campaign(), asio::detached);
        co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
        co_await sleep_for(500ms);
        REQUIRE_FALSE(won);

        etcd.move_leader_away_from(frozen_member);
        election::test::Frozen frozen(etcd.pid(frozen_member));
        co_await sleep_for(200ms);
        leader.crash();
        const auto crashed = Clock::now();
        co_await require_within([&] { return won.has_value(); }, 8s, "b to lead");
        const auto took = Clock::now() - crashed;
        INFO("b led " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms after the crash (TTL 2 s)");
        CHECK(took < 2s + 2500ms);
        CHECK(b.is_leader());
        frozen.thaw();
        co_await b.resign();
      },
      60s);
}

// The view a candidate has can lag behind etcd (its watch's member frozen): what it shows of
// the line must never crown a key etcd has deleted. Here the candidate's key is deleted and its
// leader resigns while its watch is frozen: the candidate puts its key in line again (same
// name: the same lease) and leads with the new one.
TEST_CASE("a candidate whose key is deleted while its watch lags leads with a new key",
          "[failover][cluster]") {
  auto etcd = start_cluster("failover-stale-watch");
  run(
      [&]() -> asio::awaitable<void> {
        const auto executor = co_await asio::this_coro::executor;
        election::Client client(executor, options_for(etcd));
        const auto name = election::test::unique_name("stale-watch");
        std::optional<election::Observer> observer;
        const int frozen_member =
            co_await watch_away_from_raft_leader(etcd, client, name, observer);

        election::Client leader_client(executor, options_for(etcd));
        election::Participant a(leader_client, name, "a", ttl(5s));
        co_await a.campaign();
        election::Participant p(client, name, "p", ttl(5s));
        std::optional<election::LeaderKey> won;
        auto campaign = [&]() -> asio::awaitable<void> { won = co_await p.campaign(); };
        asio::co_spawn(executor, campaign(), asio::detached);
        co_await require_within([&] { return p.lease_id().has_value(); }, 5s, "p in line");
        co_await sleep_for(300ms);
        const auto old_key = name + "/" + election::lease_hex(*p.lease_id());

        etcd.move_leader_away_from(frozen_member);
        election::test::Frozen frozen(etcd.pid(frozen_member));
        const auto other = etcd.endpoint((frozen_member + 1) % 3);
        const auto del =
            "ETCDCTL_API=3 etcdctl --endpoints=" + other + " del " + old_key + " > /dev/null";
        REQUIRE(std::system(del.c_str()) == 0);
        co_await a.resign();
        co_await require_within([&] { return won.has_value(); }, 5s, "p to lead");
        CHECK(won->key == old_key);
        CHECK(p.is_leader());
        auto state = co_await election::first_of(p.leader(), sleep_for(2s));
        REQUIRE(state.index() == 0);
        REQUIRE(std::get<0>(state));
        CHECK(std::get<0>(state)->key == old_key);
        CHECK(std::get<0>(state)->create_revision == won->create_revision);
        frozen.thaw();
        co_await p.resign();
      },
      90s);
}
