// A signature means: the owner chose to end, and its work has stopped (issue 33, point 1 and
// findings 5 and 6 of reviews/safety-96145a3.md). A term that ends otherwise (its lease's local
// deadline, a lost lease, a deleted key) is removed unsigned, once its work has stopped, and
// the next candidate waits the takeover delay; an owner's stop keeps the term, renewed, until
// the work has stopped. Against the fixture's etcd 3.4.23, with the chaos suite's proxy where a
// link must be slow.
#include "chaos/proxy.hpp"
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/etcdctl.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <catch2/catch.hpp>

#include <optional>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using boost::system::system_error;
using election::Participant;
using election::test::fixture_options;
using election::test::options_for;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using election::test::unique_name;
using Steady = std::chrono::steady_clock;

namespace {

// A Client whose every byte passes `proxy` (to the fixture's first member).
election::ClientOptions through(const chaos::Proxy& proxy) {
  return options_for({"127.0.0.1:" + std::to_string(proxy.port())});
}

}  // namespace

// Finding 5: the signed resignation's Txn is applied but its answer is lost (the attempt's
// deadline passes on a slow link); the next attempt's guard fails. Before the fix the signature
// stayed on the Session's live lease.
TEST_CASE("a Session's signed resignation whose answer was lost leaves no signature",
          "[signature]") {
  const auto name = unique_name("signature-lost-answer");
  run(
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        chaos::Proxy proxy(ex, election::test::tcp_endpoint(fixture_options().endpoints.front()));
        election::Client client(ex, through(proxy));
        election::Client observer(ex, fixture_options());
        election::Session session(client);
        Participant p(session, name, "v");
        co_await p.campaign();
        REQUIRE(p.is_leader());

        proxy.set_delay(400ms);  // a round trip of 800 ms: longer than an attempt's 500
        bool resigned = false;
        error_code resign_error;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
              resign_error = co_await election::test::error_of([&] { return p.resign(); });
              resigned = true;
            },
            asio::detached);
        co_await sleep_for(2500ms);
        proxy.set_delay(0ms);
        co_await require_within([&] { return resigned; }, 10s, "resign() to return");
        CHECK_FALSE(resign_error);
        const auto keys = co_await election::test::keys_of(observer, name);
        const int signatures = co_await election::test::signatures_of(observer, name);
        CHECK(keys.empty());
        CHECK(signatures == 0);
        // The session's lease lives on: only the key and its signature went.
        CHECK(session.lease_id().has_value());
      },
      30s);
}
