// Lease: grant, keep-alive, loss and its reasons, against a real etcd.
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <catch2/catch.hpp>

#include <cstdlib>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;
using election::errc;
using election::Lease;
using election::test::fixture_options;
using election::test::options_for;
using election::test::run;
using election::test::sleep_for;
using election::test::ttl;
using Clock = election::lease_clock;  // the clock deadlines are on

namespace {

std::filesystem::path private_dir(const std::string& name) {
  return std::filesystem::path(ELECTION_TEST_WORK_DIR) / (name + "-" + std::to_string(::getpid()));
}

// Revokes a lease through etcdctl, a client that is not ours.
void revoke_with_etcdctl(std::int64_t id) {
  const auto command =
      "ETCDCTL_API=3 etcdctl --endpoints=" + election::test::fixture_endpoints().front() +
      " lease revoke " + election::lease_hex(id) + " >/dev/null";
  REQUIRE(std::system(command.c_str()) == 0);
}

}  // namespace

TEST_CASE("grant reports the TTL etcd granted", "[lease]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    auto lease = co_await Lease::grant(client, 5s);
    CHECK(lease.id() != 0);
    CHECK(lease.ttl() == 5s);
    CHECK_FALSE(lease.lost());
    auto ttl = co_await lease.time_to_live();
    CHECK(ttl.granted == 5s);
    CHECK(ttl.remaining > 0s);
    CHECK(ttl.remaining <= 5s);

    // Under etcd's minimum (2 s with the default election timeout) the server raises the TTL.
    auto short_lease = co_await Lease::grant(client, 1s);
    CHECK(short_lease.requested_ttl() == 1s);
    CHECK(short_lease.ttl() == 2s);
    co_await lease.revoke();
    co_await short_lease.revoke();
  });
}

TEST_CASE("bad TTLs are refused with a clear error", "[lease]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    auto code_of = [&](std::chrono::seconds ttl) -> asio::awaitable<boost::system::error_code> {
      try {
        co_await Lease::grant(client, ttl);
      } catch (const boost::system::system_error& e) {
        co_return e.code();
      }
      co_return boost::system::error_code{};
    };
    auto zero = co_await code_of(0s);
    CHECK(zero == errc::invalid_ttl);
    auto negative = co_await code_of(-3s);
    CHECK(negative == errc::invalid_ttl);
    auto too_large = co_await code_of(std::chrono::seconds(9'000'000'001));
    CHECK(too_large == errc::ttl_refused);
  });
}

TEST_CASE("keep-alive holds a 2 s lease for 10 s", "[lease]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        auto lease = co_await Lease::grant(client, 2s);
        REQUIRE(lease.ttl() == 2s);
        co_await sleep_for(10s);
        CHECK_FALSE(lease.lost());
        CHECK(lease.deadline() > Clock::now());
        auto ttl = co_await lease.time_to_live();
        CHECK(ttl.remaining > 0s);
        co_await lease.revoke();
        CHECK(lease.lost_reason() == errc::lease_revoked);
        auto after_revoke = co_await lease.time_to_live();
        CHECK(after_revoke.remaining == -1s);
      },
      30s);
}

TEST_CASE("a lease revoked from outside is reported lost within one keep-alive period", "[lease]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    auto lease = co_await Lease::grant(client, 3s);
    co_await sleep_for(500ms);
    revoke_with_etcdctl(lease.id());
    const auto revoked = Clock::now();
    auto reason = co_await lease.wait_lost();
    const auto elapsed = Clock::now() - revoked;
    CHECK(reason == errc::lease_expired);
    CHECK(lease.lost());
    CHECK(elapsed <= 1s + 300ms);  // period = TTL / 3, plus one round trip
  });
}

TEST_CASE(
    "with etcd frozen, the lease is lost before its TTL runs out from the last acknowledged send",
    "[lease][freeze]") {
  auto etcd = election::test::EtcdCluster::start(private_dir("lease-freeze"), 1);
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd.endpoints()));
        auto lease = co_await Lease::grant(client, 2s);
        co_await sleep_for(1500ms);
        REQUIRE_FALSE(lease.lost());
        election::test::Frozen frozen(etcd.pid(0));
        const auto frozen_at = Clock::now();
        // An answer etcd sent just before it stopped may still be on its way in: the deadline
        // is read once that has landed (nothing new can come from a stopped etcd).
        co_await sleep_for(200ms);
        const auto deadline_at_freeze = lease.deadline();
        auto reason = co_await lease.wait_lost();
        const auto lost_at = Clock::now();
        CHECK(reason == errc::lease_deadline_passed);
        // Every acknowledged send happened before the freeze, so the server cannot expire the
        // lease before frozen_at - (time since last ack) + TTL; we must have given up before
        // frozen_at + TTL at the latest, and not before the deadline we had at the freeze.
        CHECK(lost_at < frozen_at + 2s);
        CHECK(lost_at >= deadline_at_freeze);
        CHECK(lost_at - deadline_at_freeze < 100ms);
      },
      30s);
}

TEST_CASE("a keep-alive stream broken by an etcd restart is re-opened and the lease survives",
          "[lease][restart]") {
  auto etcd = election::test::EtcdCluster::start(private_dir("lease-restart"), 1);
  run(
      [&]() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, options_for(etcd.endpoints()));
        auto lease = co_await Lease::grant(client, 6s);
        co_await sleep_for(500ms);
        etcd.restart_member(0);  // blocks the executor for ~2 s: a harsh but real hiccup
        co_await sleep_for(6s);
        CHECK_FALSE(lease.lost());
        auto ttl = co_await lease.time_to_live();
        CHECK(ttl.remaining > 0s);
      },
      40s);
}

TEST_CASE("many leases on one client are kept alive together, and each is lost on its own",
          "[lease]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        std::vector<Lease> leases;
        for (int i = 0; i < 40; ++i) {
          leases.push_back(co_await Lease::grant(client, 2s));
          co_await sleep_for(20ms);  // granted at different moments, renewed on one stream
        }
        co_await sleep_for(6s);  // three TTLs
        for (auto& lease : leases) {
          CHECK_FALSE(lease.lost());
          auto ttl = co_await lease.time_to_live();
          CHECK(ttl.remaining > 0s);
        }
        // Revoked from outside: every other lease is reported lost, the rest carry on.
        for (std::size_t i = 0; i < leases.size(); i += 2) revoke_with_etcdctl(leases[i].id());
        co_await sleep_for(1500ms);
        for (std::size_t i = 0; i < leases.size(); ++i) {
          CHECK(leases[i].lost() == (i % 2 == 0));
          if (i % 2 == 0) CHECK(leases[i].lost_reason() == errc::lease_expired);
        }
        // Dropping a lease handle stops only its renewals.
        std::vector<Lease> alive;
        for (std::size_t i = 3; i < leases.size(); i += 2) alive.push_back(std::move(leases[i]));
        leases.clear();  // the lost ones, and index 1, still alive on the server until its TTL
        co_await sleep_for(3s);
        for (auto& lease : alive) {
          CHECK_FALSE(lease.lost());
          co_await lease.revoke();
        }
      },
      40s);
}
