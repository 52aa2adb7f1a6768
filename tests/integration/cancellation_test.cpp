// Every row of the cancellation table (README "Cancellation"; each operation's doc comment):
// each operation, in its token form and its awaitable form, is cut short by the types it
// honours and ignores the others. An operation that honours every type ends on a total
// cancellation; one whose cancellation has effects (terminal, partial) goes on through a total
// one and ends on a partial one. Operations that would otherwise finish at once are held by a
// private etcd frozen with SIGSTOP.
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <catch2/catch.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using election::test::options_for;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using election::test::ttl;

namespace {

enum class Honours { all, terminal_partial };

// One etcd for the whole program, frozen by the rows that need it.
election::test::EtcdCluster& etcd() {
  static auto cluster =
      election::test::EtcdCluster::start(std::filesystem::path(ELECTION_TEST_WORK_DIR) /
                                             ("cancellation-" + std::to_string(::getpid())),
                                         1);
  return cluster;
}

election::ClientOptions options() {
  auto o = options_for(etcd().endpoints());
  o.request_timeout = 4s;
  return o;
}

// What an operation ended with, shared between the test and the operation's handler.
using Outcome = std::shared_ptr<std::optional<error_code>>;

// Emits total, then (if it was ignored, as it must be for an operation with effects) partial,
// checking at each step that the operation is still waiting or has ended with
// operation_aborted.
asio::awaitable<void> cut(asio::cancellation_signal& cancel, const Outcome& outcome, Honours h,
                          const char* what) {
  INFO(what);
  co_await sleep_for(150ms);
  REQUIRE_FALSE(outcome->has_value());  // it waits
  cancel.emit(asio::cancellation_type::total);
  if (h == Honours::all) {
    co_await require_within([&] { return outcome->has_value(); }, 2s, what);
    CHECK(**outcome == asio::error::operation_aborted);
    co_return;
  }
  co_await sleep_for(300ms);
  CHECK_FALSE(outcome->has_value());  // a total cancellation would undo nothing: ignored
  cancel.emit(asio::cancellation_type::partial);
  co_await require_within([&] { return outcome->has_value(); }, 2s, what);
  CHECK(**outcome == asio::error::operation_aborted);
}

// A token-form operation: `launch(token)` initiates it with the given completion token.
using Launch = std::function<void(asio::cancellation_slot, std::function<void(error_code)>)>;

asio::awaitable<void> token_form(const Launch& launch, Honours h, const char* what) {
  asio::cancellation_signal cancel;
  auto outcome = std::make_shared<std::optional<error_code>>();
  launch(cancel.slot(), [outcome](error_code ec) { *outcome = ec; });
  co_await cut(cancel, outcome, h, what);
}

// The awaitable form, in a coroutine of its own that lets every type through: what reaches the
// operation then is exactly the operation's own filter.
asio::awaitable<void> awaiting(std::function<asio::awaitable<void>()> op, Outcome outcome) {
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
  try {
    co_await op();
    *outcome = error_code{};
  } catch (const boost::system::system_error& e) {
    *outcome = e.code();
  }
}

asio::awaitable<void> awaitable_form(std::function<asio::awaitable<void>()> op, Honours h,
                                     const char* what) {
  asio::cancellation_signal cancel;
  auto outcome = std::make_shared<std::optional<error_code>>();
  asio::co_spawn(co_await asio::this_coro::executor, awaiting(std::move(op), outcome),
                 asio::bind_cancellation_slot(cancel.slot(), asio::detached));
  co_await cut(cancel, outcome, h, what);
}

// A handler that records only the error code, whatever the operation completes with.
template <class Done>
auto recording(asio::cancellation_slot slot, Done done) {
  return asio::bind_cancellation_slot(slot, [done](error_code ec, auto&&...) { done(ec); });
}

}  // namespace

TEST_CASE("Client::connect and server_version honour every type", "[token][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::test::Frozen frozen(etcd().pid(0));  // no handshake: connecting waits
    {
      election::Client client(ex, options());
      co_await token_form(
          [&](auto slot, auto done) { client.async_connect(recording(slot, done)); }, Honours::all,
          "async_connect");
      co_await awaitable_form([&]() { return client.connect(); }, Honours::all, "connect");
    }
    {
      election::Client client(ex, options());
      co_await token_form(
          [&](auto slot, auto done) { client.async_server_version(recording(slot, done)); },
          Honours::all, "async_server_version");
      auto version = [&]() -> asio::awaitable<void> { co_await client.server_version(); };
      co_await awaitable_form(version, Honours::all, "server_version");
    }
  });
}

TEST_CASE(
    "Lease::grant and revoke honour terminal and partial, time_to_live and wait_lost every type",
    "[token][cancel]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, options());
    auto lease = co_await election::Lease::grant(client, 10s);
    {
      co_await token_form(
          [&](auto slot, auto done) { lease.async_wait_lost(recording(slot, done)); }, Honours::all,
          "async_wait_lost");
      auto wait = [&]() -> asio::awaitable<void> { co_await lease.wait_lost(); };
      co_await awaitable_form(wait, Honours::all, "wait_lost");
    }
    election::test::Frozen frozen(etcd().pid(0));
    co_await token_form(
        [&](auto slot, auto done) {
          election::Lease::async_grant(client, 10s, {}, recording(slot, done));
        },
        Honours::terminal_partial, "async_grant");
    auto grant = [&]() -> asio::awaitable<void> { co_await election::Lease::grant(client, 10s); };
    co_await awaitable_form(grant, Honours::terminal_partial, "grant");
    co_await token_form(
        [&](auto slot, auto done) { lease.async_time_to_live(recording(slot, done)); },
        Honours::all, "async_time_to_live");
    auto left = [&]() -> asio::awaitable<void> { co_await lease.time_to_live(); };
    co_await awaitable_form(left, Honours::all, "time_to_live");
    co_await token_form([&](auto slot, auto done) { lease.async_revoke(recording(slot, done)); },
                        Honours::terminal_partial, "async_revoke");
  });
}

TEST_CASE("Session::start and Participant::acquire_lease honour terminal and partial",
          "[token][cancel]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, options());
    co_await client.connect();
    election::Session session(client, {.ttl = 10s});
    election::Participant p(client, election::test::unique_name("cancel-acquire"), "p", ttl(10s));
    election::test::Frozen frozen(etcd().pid(0));
    co_await token_form([&](auto slot, auto done) { session.async_start(recording(slot, done)); },
                        Honours::terminal_partial, "session async_start");
    auto start = [&]() -> asio::awaitable<void> { co_await session.start(); };
    co_await awaitable_form(start, Honours::terminal_partial, "session start");
    co_await token_form([&](auto slot, auto done) { p.async_acquire_lease(recording(slot, done)); },
                        Honours::terminal_partial, "async_acquire_lease");
    auto acquire = [&]() -> asio::awaitable<void> { co_await p.acquire_lease(); };
    co_await awaitable_form(acquire, Honours::terminal_partial, "acquire_lease");
  });
}

TEST_CASE("Participant::campaign honours terminal and partial, keep_alive every type",
          "[token][cancel]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, options());
    const auto name = election::test::unique_name("cancel-campaign");
    election::Participant leader(client, name, "a", ttl(10s));
    election::Participant waiting(client, name, "b", ttl(10s));
    co_await leader.campaign();
    co_await token_form(
        [&](auto slot, auto done) { waiting.async_campaign(recording(slot, done)); },
        Honours::terminal_partial, "async_campaign");
    auto campaign = [&]() -> asio::awaitable<void> { co_await waiting.campaign(); };
    co_await awaitable_form(campaign, Honours::terminal_partial, "campaign");
    co_await token_form(
        [&](auto slot, auto done) { leader.async_keep_alive(recording(slot, done)); }, Honours::all,
        "async_keep_alive");
    auto keep = [&]() -> asio::awaitable<void> { co_await leader.keep_alive(); };
    co_await awaitable_form(keep, Honours::all, "keep_alive");
    CHECK(leader.is_leader());  // a cancelled wait changes nothing
    co_await leader.resign();
  });
}

TEST_CASE(
    "Participant::proclaim, put_if_leader and resign honour terminal and partial, leader and "
    "candidates every type",
    "[token][cancel]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, options());
    const auto name = election::test::unique_name("cancel-leader");
    election::Participant p(client, name, "a", ttl(10s));
    co_await p.campaign();
    {
      election::test::Frozen frozen(etcd().pid(0));
      co_await token_form(
          [&](auto slot, auto done) { p.async_proclaim("b", recording(slot, done)); },
          Honours::terminal_partial, "async_proclaim");
      auto proclaim = [&]() -> asio::awaitable<void> { co_await p.proclaim("c"); };
      co_await awaitable_form(proclaim, Honours::terminal_partial, "proclaim");
      co_await token_form(
          [&](auto slot, auto done) {
            p.async_put_if_leader(name + "-state", "1", recording(slot, done));
          },
          Honours::terminal_partial, "async_put_if_leader");
      auto put = [&]() -> asio::awaitable<void> { co_await p.put_if_leader(name + "-state", "2"); };
      co_await awaitable_form(put, Honours::terminal_partial, "put_if_leader");
      co_await token_form([&](auto slot, auto done) { p.async_leader(recording(slot, done)); },
                          Honours::all, "async_leader");
      auto leader = [&]() -> asio::awaitable<void> { co_await p.leader(); };
      co_await awaitable_form(leader, Honours::all, "leader");
      co_await token_form([&](auto slot, auto done) { p.async_candidates(recording(slot, done)); },
                          Honours::all, "async_candidates");
      auto line = [&]() -> asio::awaitable<void> { co_await p.candidates(); };
      co_await awaitable_form(line, Honours::all, "candidates");
      co_await token_form([&](auto slot, auto done) { p.async_resign(recording(slot, done)); },
                          Honours::terminal_partial, "async_resign");
    }
    CHECK_FALSE(p.is_leader());  // a cancelled resign has still ended the leadership
  });
}

TEST_CASE("Observer::next honours every type, Leadership::run terminal and partial",
          "[token][cancel]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, options());
    const auto name = election::test::unique_name("cancel-observer");
    election::Observer observer(client, name);
    co_await observer.next();  // the state now; the next one waits
    co_await token_form([&](auto slot, auto done) { observer.async_next(recording(slot, done)); },
                        Honours::all, "async_next");
    auto next = [&]() -> asio::awaitable<void> { co_await observer.next(); };
    co_await awaitable_form(next, Honours::all, "next");

    auto idle = [](election::Participant&, const election::LeaderKey&) -> asio::awaitable<void> {
      asio::steady_timer forever(co_await asio::this_coro::executor,
                                 asio::steady_timer::duration::max());
      co_await forever.async_wait(asio::use_awaitable);
    };
    election::Leadership by_token(client, name + "-token", "t", idle, {.participant = ttl(10s)});
    co_await token_form([&](auto slot, auto done) { by_token.async_run(recording(slot, done)); },
                        Honours::terminal_partial, "async_run");
    election::Leadership awaited(client, name + "-awaited", "a", idle, {.participant = ttl(10s)});
    auto loop = [&]() -> asio::awaitable<void> { co_await awaited.run(); };
    co_await awaitable_form(loop, Honours::terminal_partial, "run");
  });
}
