// Leadership across a slow link (a cross-region etcd): every byte between the participants and
// etcd held back by a proxy, each way. A late answer to a renewal is still a renewal.
#include "chaos/proxy.hpp"
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <catch2/catch.hpp>

#include <optional>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using election::Participant;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using Clock = std::chrono::steady_clock;

namespace {

asio::ip::tcp::endpoint endpoint_of(const std::string& host_port) {
  const auto colon = host_port.rfind(':');
  return {asio::ip::make_address(host_port.substr(0, colon)),
          static_cast<unsigned short>(std::stoi(host_port.substr(colon + 1)))};
}

long long ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// A leader and a queued candidate, each on its own Client through a proxy that delays every byte
// by `each_way`: the leader must lead for `hold`, then hand over within `handover` of its
// resign() call.
void lead_across(std::chrono::milliseconds each_way, std::chrono::seconds ttl,
                 std::chrono::seconds hold, std::chrono::milliseconds handover) {
  run(
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        chaos::Proxy proxy(ex, endpoint_of(election::test::fixture_endpoints().front()));
        proxy.set_delay(each_way);
        auto options = election::test::options_for({"127.0.0.1:" + std::to_string(proxy.port())});
        // What a user of such a link sets: a request may take a few round trips.
        options.request_timeout =
            std::max<std::chrono::milliseconds>(options.request_timeout, 8 * each_way);
        options.connect_timeout = options.request_timeout;
        election::Client a_client(ex, options);
        election::Client b_client(ex, options);
        const auto name = election::test::unique_name("slow-link");
        Participant a(a_client, name, "a", election::test::ttl(ttl));
        Participant b(b_client, name, "b", election::test::ttl(ttl));
        co_await a.campaign();
        REQUIRE(a.is_leader());

        std::optional<election::LeaderKey> b_won;
        auto campaign = [&]() -> asio::awaitable<void> { b_won = co_await b.campaign(); };
        asio::co_spawn(ex, campaign(), asio::detached);
        std::optional<boost::system::error_code> a_ended;
        auto watch = [&]() -> asio::awaitable<void> { a_ended = co_await a.keep_alive(); };
        asio::co_spawn(ex, watch(), asio::detached);

        const auto start = Clock::now();
        while (Clock::now() - start < hold) {
          co_await sleep_for(100ms);
          if (!a.is_leader()) break;
        }
        INFO("a led for " << ms(Clock::now() - start) << " ms; its leadership ended with "
                          << (a_ended ? a_ended->message() : std::string("nothing")));
        REQUIRE(a.is_leader());
        CHECK_FALSE(a_ended);
        CHECK_FALSE(b_won);

        const auto resigning = Clock::now();
        co_await a.resign();
        const auto resigned = Clock::now();
        co_await require_within([&] { return b_won.has_value(); }, 4 * handover + 16 * each_way,
                                "b to lead after a's resign");
        const auto led = Clock::now();
        INFO("resign() took " << ms(resigned - resigning) << " ms; b led " << ms(led - resigning)
                              << " ms after resign() was called, " << ms(led - resigned)
                              << " ms after it returned");
        CHECK(led - resigned < handover);
        CHECK(b.is_leader());
        co_await b.resign();
      },
      hold + 60s);
}

}  // namespace

TEST_CASE("600 ms round trip and TTL 3 s: a leader leads for 60 s and hands over in under 2 s",
          "[slow-link]") {
  lead_across(300ms, 3s, 60s, 2s);
}

TEST_CASE("1.5 s round trip and TTL 10 s: a leader leads for 60 s and hands over in under 2 s",
          "[slow-link]") {
  lead_across(750ms, 10s, 60s, 2s);
}
