// The gRPC <-> Asio bridge against a real etcd: cancellation through `||`, streams that outlive
// a cancelled read, and a stream destroyed while a read waits.
#include "api/access.hpp"
#include "election/election.hpp"
#include "etcd/v3election.grpc.pb.h"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"
#include "support/server_stream.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <catch2/catch.hpp>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;
using election::test::fixture_options;
using election::test::run;
using election::test::sleep_for;
using Clock = std::chrono::steady_clock;

namespace {

// etcd's Election service. The library does not use it (it runs the protocol on KV and Watch),
// but its Campaign is a unary call that blocks in the server while another candidate leads, and
// its Observe a server stream: what the bridge's cancellation is shown on here.
using ElectionStub = v3electionpb::Election::Stub;

std::unique_ptr<ElectionStub> election_service(election::detail::ClientCore& core) {
  return v3electionpb::Election::NewStub(core.channel());
}

asio::awaitable<v3electionpb::CampaignResponse> campaign(election::detail::ClientCore& core,
                                                         ElectionStub& stub,
                                                         const std::string& name,
                                                         std::int64_t lease) {
  v3electionpb::CampaignRequest request;
  request.set_name(name);
  request.set_lease(lease);
  request.set_value("v");
  return core.call("campaign", stub.async(), &ElectionStub::async::Campaign, std::move(request));
}

asio::awaitable<std::int64_t> count_keys(election::detail::ClientCore& core,
                                         const std::string& prefix) {
  etcdserverpb::RangeRequest request;
  request.set_key(prefix);
  auto end = prefix;
  end.back()++;
  request.set_range_end(end);
  request.set_count_only(true);
  auto reply = co_await core.call("range", core.kv().async(), &etcdserverpb::KV::Stub::async::Range,
                                  std::move(request));
  co_return reply.count();
}

election::detail::ServerStream<v3electionpb::LeaderResponse> observe(
    election::detail::ClientCore& core, ElectionStub& stub, const std::string& name) {
  v3electionpb::LeaderRequest request;
  request.set_name(name);
  return election::detail::start_server_stream<v3electionpb::LeaderResponse>(
      core.tracker(), core.executor(), core.stream_context(),
      [&stub, request](auto* ctx, auto* reactor) {
        stub.async()->Observe(ctx, &request, reactor);
      });
}

}  // namespace

TEST_CASE("a unary call raced against a timer returns at the timer and is cancelled on the server",
          "[bridge]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    auto& core = *election::detail::access::core(client);
    auto stub = election_service(core);
    const auto name = election::test::unique_name("bridge-unary");
    auto leader = co_await election::Lease::grant(client, 10s);
    auto waiter = co_await election::Lease::grant(client, 10s);
    co_await campaign(core, *stub, name, leader.id());

    asio::steady_timer timer(client.get_executor(), 300ms);
    const auto start = Clock::now();
    auto result = co_await (campaign(core, *stub, name, waiter.id()) ||
                            timer.async_wait(asio::use_awaitable));
    const auto elapsed = Clock::now() - start;
    CHECK(result.index() == 1);
    CHECK(elapsed >= 300ms);
    CHECK(elapsed < 1s);
    // etcd resigns a campaign whose client cancelled it: only the leader's key is left. The
    // server does so once the cancel reaches it, a moment after the call returned here.
    auto keys_left = co_await count_keys(core, name + "/");
    for (int i = 0; i < 40 && keys_left != 1; ++i) {
      co_await election::test::sleep_for(50ms);
      keys_left = co_await count_keys(core, name + "/");
    }
    CHECK(keys_left == 1);
    co_await leader.revoke();
    co_await waiter.revoke();
  });
}

TEST_CASE("a stream read raced against a timer returns at the timer, and the stream stays usable",
          "[bridge]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    auto& core = *election::detail::access::core(client);
    auto stub = election_service(core);
    const auto name = election::test::unique_name("bridge-stream");
    auto stream = observe(core, *stub, name);

    asio::steady_timer timer(client.get_executor(), 300ms);
    const auto start = Clock::now();
    auto result =
        co_await (stream.async_read(asio::use_awaitable) || timer.async_wait(asio::use_awaitable));
    const auto elapsed = Clock::now() - start;
    CHECK(result.index() == 1);
    CHECK(elapsed < 1s);

    auto lease = co_await election::Lease::grant(client, 10s);
    auto won = co_await campaign(core, *stub, name, lease.id());
    auto message = co_await stream.async_read(asio::use_awaitable);
    REQUIRE(message.has_value());
    CHECK(message->kv().key() == won.leader().key());
    CHECK(message->kv().create_revision() == won.leader().rev());
    co_await lease.revoke();
  });
}

TEST_CASE("a stream destroyed while a read waits ends the read cleanly", "[bridge]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    auto& core = *election::detail::access::core(client);
    auto stub = election_service(core);
    auto stream = std::make_unique<election::detail::ServerStream<v3electionpb::LeaderResponse>>(
        observe(core, *stub, election::test::unique_name("bridge-destroy")));

    bool ended = false;
    // The reader touches the stream only to start its read, as the bridge allows.
    asio::co_spawn(
        client.get_executor(),
        [&, raw = stream.get()]() -> asio::awaitable<void> {
          auto message = co_await raw->async_read(asio::use_awaitable);
          ended = !message.has_value();
        },
        asio::detached);
    co_await sleep_for(200ms);
    stream.reset();
    const auto deadline = Clock::now() + 2s;
    while (!ended && Clock::now() < deadline) co_await sleep_for(10ms);
    CHECK(ended);
  });
}

TEST_CASE("destroying a Client cancels its calls in flight", "[bridge][client]") {
  run([]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    auto client = std::make_unique<election::Client>(executor, fixture_options());
    const auto name = election::test::unique_name("bridge-close");
    auto leader = co_await election::Lease::grant(*client, 10s);
    auto waiter = co_await election::Lease::grant(*client, 10s);
    auto stub = election_service(*election::detail::access::core(*client));
    co_await campaign(*election::detail::access::core(*client), *stub, name, leader.id());

    boost::system::error_code outcome;
    bool finished = false;
    asio::co_spawn(
        executor,
        [&]() -> asio::awaitable<void> {
          try {
            co_await campaign(*election::detail::access::core(*client), *stub, name, waiter.id());
          } catch (const boost::system::system_error& e) {
            outcome = e.code();
          }
          finished = true;
        },
        asio::detached);
    co_await sleep_for(200ms);
    const auto start = Clock::now();
    auto core =
        election::detail::access::core(*client);  // keeps the stubs alive for the leases' handles
    client.reset();
    CHECK(Clock::now() - start < 1s);
    while (!finished) co_await sleep_for(10ms);
    CHECK(outcome == asio::error::operation_aborted);
    // Later calls fail at once, naming why.
    try {
      co_await campaign(*core, *stub, name, waiter.id());
      FAIL("a closed client made a call");
    } catch (const boost::system::system_error& e) {
      CHECK(e.code() == election::errc::client_closed);
    }
  });
}
