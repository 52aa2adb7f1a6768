// The completion-token forms: each with a callback, use_future from a thread that does not run
// the io_context, deferred and as_tuple(use_awaitable); error codes with diagnostics; and a
// cancelled token operation cleaning up as the awaitable one does.
#include "api/access.hpp"
#include "election/election.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"
#include "transport/client_core.hpp"
#include "transport/kv.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <future>
#include <optional>
#include <thread>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using election::errc;
using election::Participant;
using election::test::fixture_options;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using election::test::ttl;

namespace {

// An io_context run by a thread of its own, and objects made for it; the test's thread only
// initiates operations and waits for them. Objects are made and destroyed on the io thread.
class Loop {
 public:
  Loop() : work_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}
  ~Loop() {
    work_.reset();
    thread_.join();
  }
  asio::any_io_executor executor() { return io_.get_executor(); }
  template <class F>
  auto on_loop(F f) {
    return asio::post(io_, asio::use_future(std::move(f))).get();
  }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

template <class T>
T wait(std::future<T>& f) {
  REQUIRE(f.wait_for(10s) == std::future_status::ready);
  return f.get();
}

asio::awaitable<std::size_t> count_candidates(election::Client& client, const std::string& name) {
  auto reply = co_await election::detail::range(*election::detail::access::core(client), name + "/",
                                                election::detail::prefix_end(name + "/"));
  co_return static_cast<std::size_t>(reply.kvs_size());
}

}  // namespace

TEST_CASE("every token form with a callback, from a thread that does not run the io_context",
          "[token]") {
  Loop loop;
  const auto name = election::test::unique_name("token-callbacks");
  std::optional<election::Client> client;
  std::optional<Participant> p;
  std::optional<election::Observer> observer;
  loop.on_loop([&] {
    client.emplace(loop.executor(), fixture_options());
    p.emplace(*client, name, "cb", ttl(5s));
    observer.emplace(*client, name);
  });

  // Each callback fulfils a promise; this thread waits on its future.
  std::promise<error_code> connected;
  client->async_connect([&](error_code ec) { connected.set_value(ec); });
  auto c = connected.get_future();
  CHECK_FALSE(wait(c));

  std::promise<std::string> version;
  client->async_server_version(
      [&](error_code ec, std::string v) { version.set_value(ec ? ec.message() : v); });
  auto v = version.get_future();
  CHECK(wait(v) == "3.4.23");

  std::promise<election::LeaderEvent> first;
  observer->async_next([&](error_code ec, election::LeaderEvent e) {
    CHECK_FALSE(ec);
    first.set_value(e);
  });
  auto f = first.get_future();
  CHECK_FALSE(wait(f).has_leader());

  std::promise<std::int64_t> acquired;
  p->async_acquire_lease([&](error_code ec, std::int64_t id) {
    CHECK_FALSE(ec);
    acquired.set_value(id);
  });
  auto a = acquired.get_future();
  const auto lease = wait(a);
  CHECK(lease != 0);

  std::promise<election::LeaderKey> won;
  p->async_campaign([&](error_code ec, election::LeaderKey key) {
    CHECK_FALSE(ec);
    won.set_value(key);
  });
  auto w = won.get_future();
  const auto key = wait(w);
  CHECK(key.lease == lease);
  CHECK(key.create_revision > 0);

  std::promise<election::LeaderEvent> led;
  observer->async_next([&](error_code ec, election::LeaderEvent e) {
    CHECK_FALSE(ec);
    led.set_value(e);
  });
  auto l = led.get_future();
  const auto event = wait(l);
  REQUIRE(event.has_leader());
  CHECK(event.leader->create_revision == key.create_revision);

  std::promise<std::int64_t> written;
  p->async_put_if_leader(name + "-state", "1", [&](error_code ec, std::int64_t revision) {
    CHECK_FALSE(ec);
    written.set_value(revision);
  });
  auto put = written.get_future();
  CHECK(wait(put) > key.create_revision);

  std::promise<error_code> proclaimed;
  p->async_proclaim("cb-2", [&](error_code ec) { proclaimed.set_value(ec); });
  auto pr = proclaimed.get_future();
  CHECK_FALSE(wait(pr));

  std::promise<std::optional<election::LeaderInfo>> leader;
  p->async_leader([&](error_code ec, std::optional<election::LeaderInfo> info) {
    CHECK_FALSE(ec);
    leader.set_value(info);
  });
  auto ld = leader.get_future();
  const auto info = wait(ld);
  REQUIRE(info);
  CHECK(info->value == "cb-2");

  std::promise<error_code> ended;
  p->async_keep_alive([&](error_code ec, error_code reason) { ended.set_value(ec ? ec : reason); });
  std::promise<error_code> resigned;
  p->async_resign([&](error_code ec) { resigned.set_value(ec); });
  auto r = resigned.get_future();
  CHECK_FALSE(wait(r));
  auto e = ended.get_future();
  CHECK(wait(e) == errc::resigned);

  loop.on_loop([&] {
    observer.reset();
    p.reset();
    client.reset();
  });
}

TEST_CASE("a Lease's token forms with use_future", "[token]") {
  Loop loop;
  std::optional<election::Client> client;
  loop.on_loop([&] { client.emplace(loop.executor(), fixture_options()); });
  auto granted = election::Lease::async_grant(*client, 5s, {}, asio::use_future);
  auto lease = granted.get();
  REQUIRE(lease.valid());
  CHECK(loop.on_loop([&] { return lease.ttl(); }) == 5s);  // its state is the io thread's
  auto lost = lease.async_wait_lost(asio::use_future);
  auto ttl_left = lease.async_time_to_live(asio::use_future).get();
  CHECK(ttl_left.remaining > 0s);
  lease.async_revoke(asio::use_future).get();
  CHECK(lost.get() == errc::lease_revoked);
  // A failed grant: use_future throws, the error-code forms complete with an empty Lease.
  CHECK_THROWS_AS(election::Lease::async_grant(*client, 0s, {}, asio::use_future).get(),
                  boost::system::system_error);
  std::promise<std::pair<error_code, bool>> failed;
  election::diagnostics why;
  election::Lease::async_grant(*client, 0s, {}, why, [&](error_code ec, election::Lease empty) {
    failed.set_value({ec, empty.valid()});
  });
  auto f = failed.get_future();
  const auto [ec, valid] = wait(f);
  CHECK(ec == errc::invalid_ttl);
  CHECK_FALSE(valid);
  CHECK_THAT(why.message(), Catch::Contains("TTL 0 s"));
  loop.on_loop([&] {
    lease = election::Lease();
    client.reset();
  });
}

TEST_CASE("deferred and as_tuple(use_awaitable) in a coroutine, with diagnostics", "[token]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto name = election::test::unique_name("token-deferred");
    Participant p(client, name, "d", ttl(5s));
    // deferred: nothing happens until it is awaited (or launched).
    auto later = p.async_campaign(asio::deferred);
    co_await sleep_for(200ms);
    CHECK_FALSE(p.lease_id());
    const auto key = co_await std::move(later);
    CHECK(p.is_leader());

    // as_tuple: failures as error codes, with what the library said.
    election::diagnostics why;
    auto [refused, rev] = co_await p.async_put_if_leader(name + "/inside", "x", why,
                                                         asio::as_tuple(asio::use_awaitable));
    CHECK(refused == errc::invalid_argument);
    CHECK(rev == 0);
    CHECK_THAT(why.message(), Catch::Contains(name + "/inside"));
    CHECK(why.server_message().empty());  // refused before it was sent

    auto [ok, revision] = co_await p.async_put_if_leader(name + "-state", "x", why,
                                                         asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(ok);
    CHECK(revision > key.create_revision);
    CHECK(why.message().empty());  // cleared for a success

    auto [resigned] = co_await p.async_resign(asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(resigned);
    auto [again, reason] = co_await p.async_keep_alive(asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(again);
    CHECK(reason == errc::resigned);
  });
}

TEST_CASE("a token campaign cancelled through its slot withdraws, as the awaitable one does",
          "[token][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto name = election::test::unique_name("token-cancel");
    Participant a(client, name, "a", ttl(5s));
    Participant b(client, name, "b", ttl(5s));
    co_await a.campaign();
    asio::cancellation_signal cancel;
    std::optional<error_code> outcome;
    b.async_campaign(asio::bind_cancellation_slot(
        cancel.slot(), [&](error_code ec, election::LeaderKey) { outcome = ec; }));
    co_await require_within([&] { return b.lease_id().has_value(); }, 5s, "b in line");
    co_await sleep_for(300ms);
    CHECK(co_await count_candidates(client, name) == 2);
    // Total cancellation would undo nothing a campaign did: it is not honoured.
    cancel.emit(asio::cancellation_type::total);
    co_await sleep_for(200ms);
    CHECK_FALSE(outcome);
    cancel.emit(asio::cancellation_type::terminal);
    co_await require_within([&] { return outcome.has_value(); }, 2s, "the campaign to end");
    CHECK(*outcome == asio::error::operation_aborted);
    CHECK(co_await count_candidates(client, name) == 1);  // b withdrew; a leads on
    CHECK(a.is_leader());
    co_await a.resign();
  });
}

TEST_CASE("a token next() cancelled totally loses nothing", "[token][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    const auto name = election::test::unique_name("token-next");
    election::Observer observer(client, name);
    co_await observer.next();  // the state now
    asio::cancellation_signal cancel;
    std::optional<error_code> first;
    observer.async_next(asio::bind_cancellation_slot(
        cancel.slot(), [&](error_code ec, election::LeaderEvent) { first = ec; }));
    co_await sleep_for(100ms);
    cancel.emit(asio::cancellation_type::total);
    co_await require_within([&] { return first.has_value(); }, 1s, "the wait to end");
    CHECK(*first == asio::error::operation_aborted);
    Participant p(client, name, "p", ttl(5s));
    co_await p.campaign();
    auto [ec, event] = co_await observer.async_next(asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(ec);
    REQUIRE(event.has_leader());
    CHECK(event.leader->value == "p");
    co_await p.resign();
  });
}

TEST_CASE("a deferred operation launched after its object was moved runs on the moved-to object",
          "[token][lifetime]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("token-moved");
    Participant p(client, name, "m", ttl(5s));
    auto later = p.async_campaign(asio::deferred);
    Participant moved(std::move(p));
    const auto key = co_await std::move(later);
    CHECK(moved.is_leader());
    CHECK(moved.leader_key()->create_revision == key.create_revision);
    // An operation made on the moved-from object fails with object_gone, before anything is sent.
    election::diagnostics why;
    auto [ec, revision] = co_await p.async_put_if_leader(name + "-state", "x", why,
                                                         asio::as_tuple(asio::use_awaitable));
    CHECK(ec == errc::object_gone);
    CHECK(revision == 0);
    CHECK_THAT(why.message(), Catch::Contains("put_if_leader"));
    co_await moved.resign();
  });
}

TEST_CASE("a deferred operation launched after its object was destroyed fails with object_gone",
          "[token][lifetime]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("token-destroyed");
    std::optional<Participant> p;
    p.emplace(client, name, "d", ttl(5s));
    auto campaign = p->async_campaign(asio::deferred);
    std::optional<election::Observer> observer;
    observer.emplace(client, name);
    auto next = observer->async_next(asio::deferred);
    std::optional<election::Lease> lease;
    lease = co_await election::Lease::grant(client, 5s);
    auto left = lease->async_time_to_live(asio::deferred);
    p.reset();
    observer.reset();
    lease.reset();
    auto [ec, key] = co_await std::move(campaign)(asio::as_tuple(asio::use_awaitable));
    CHECK(ec == errc::object_gone);
    CHECK(key.create_revision == 0);
    auto [next_ec, event] = co_await std::move(next)(asio::as_tuple(asio::use_awaitable));
    CHECK(next_ec == errc::object_gone);
    auto [left_ec, ttl_left] = co_await std::move(left)(asio::as_tuple(asio::use_awaitable));
    CHECK(left_ec == errc::object_gone);
    // Nothing was put in line, and no lease is renewed for the destroyed participant.
    CHECK(co_await count_candidates(client, name) == 0);
    co_await require_within([&] { return client.metrics().leases == 0; }, 2s,
                            "no lease kept alive");
  });
}

TEST_CASE("a Lease delivered through use_future is destroyed safely on the thread that got it",
          "[token][thread]") {
  Loop loop;
  std::optional<election::Client> client;
  loop.on_loop([&] { client.emplace(loop.executor(), fixture_options()); });
  {
    auto lease = election::Lease::async_grant(*client, 5s, {}, asio::use_future).get();
    REQUIRE(lease.valid());
    CHECK(loop.on_loop([&] { return client->metrics().leases; }) == 1);
  }  // destroyed here, on this thread: its keep-alive is stopped on the Client's executor
  const auto end = std::chrono::steady_clock::now() + 2s;
  while (loop.on_loop([&] { return client->metrics().leases; }) != 0 &&
         std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(10ms);
  CHECK(loop.on_loop([&] { return client->metrics().leases; }) == 0);
  loop.on_loop([&] { client.reset(); });
}

TEST_CASE("an awaitable form awaited on another executor runs on the Client's and comes back",
          "[token][thread]") {
  Loop loop;  // the Client's executor, on a thread of its own
  std::optional<election::Client> client;
  std::optional<Participant> p;
  const auto name = election::test::unique_name("token-executor");
  loop.on_loop([&] {
    client.emplace(loop.executor(), fixture_options());
    p.emplace(*client, name, "e", ttl(5s));
  });
  run([&]() -> asio::awaitable<void> {
    const auto here = std::this_thread::get_id();
    const auto key = co_await p->campaign();    // from this thread's io_context
    CHECK(std::this_thread::get_id() == here);  // resumed on the caller's executor
    CHECK(key.create_revision > 0);
    CHECK(loop.on_loop([&] { return p->is_leader(); }));
    const auto revision = co_await p->put_if_leader(name + "-state", "1");
    CHECK(revision > key.create_revision);
    co_await p->resign();
    CHECK(std::this_thread::get_id() == here);
  });
  loop.on_loop([&] {
    p.reset();
    client.reset();
  });
}

TEST_CASE("every operation that talks to etcd takes a diagnostics", "[token][diagnostics]") {
  run([]() -> asio::awaitable<void> {
    election::ClientOptions unreachable;
    unreachable.endpoints = {"127.0.0.1:1"};  // nothing listens on port 1
    unreachable.connect_timeout = 300ms;
    election::Client client(co_await asio::this_coro::executor, unreachable);
    election::diagnostics why;
    auto [ec, version] =
        co_await client.async_server_version(why, asio::as_tuple(asio::use_awaitable));
    CHECK(ec == errc::unreachable);
    CHECK_THAT(why.message(), Catch::Contains("127.0.0.1:1"));

    election::Client live(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("token-diag");
    Participant p(live, name, "x", ttl(5s));
    election::diagnostics line_why;
    auto [line_ec, line] =
        co_await p.async_candidates(line_why, asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(line_ec);
    CHECK(line.empty());
    CHECK(line_why.message().empty());
    auto lease = co_await election::Lease::grant(live, 5s);
    election::diagnostics lost_why;
    co_await lease.revoke();
    auto [lost_ec, reason] =
        co_await lease.async_wait_lost(lost_why, asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(lost_ec);
    CHECK(reason == errc::lease_revoked);
  });
}
