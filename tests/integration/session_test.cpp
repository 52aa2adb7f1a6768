// election::Session against a real etcd: one lease for participants and leaderships in many
// elections; what ends them all (the lease lost, the Session gone) and what ends one (resign).
#include "election/election.hpp"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/run.hpp"

#include "api/access.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using boost::system::system_error;
using election::errc;
using election::Participant;
using election::Session;
using election::SessionOptions;
using election::test::error_of;
using election::test::fixture_options;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using election::test::unique_name;

namespace {

SessionOptions session_ttl(std::chrono::seconds t) {
  SessionOptions o;
  o.ttl = t;
  return o;
}

std::string hex(std::int64_t lease) {
  char text[32];
  std::snprintf(text, sizeof text, "%llx", static_cast<unsigned long long>(lease));
  return text;
}

int etcdctl(const std::string& args) {
  const auto command = "ETCDCTL_API=3 etcdctl --endpoints=" + fixture_options().endpoints.front() +
                       " " + args + " >/dev/null 2>&1";
  return std::system(command.c_str());
}

// The keys etcd has under `election`/, in create order: what any other process would see.
asio::awaitable<std::vector<std::string>> line_of(election::Client& client,
                                                  const std::string& election) {
  Participant reader(client, election, "");  // never campaigns: candidates() is one read
  std::vector<std::string> keys;
  for (const auto& c : co_await reader.candidates()) keys.push_back(c.key);
  co_return keys;
}

// Polls line_of() until `election` has no candidate left (a key deleted in the background), for
// at most `limit`; returns what it saw last.
asio::awaitable<std::vector<std::string>> line_emptied(election::Client& client,
                                                       const std::string& election,
                                                       std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto line = co_await line_of(client, election);
    if (line.empty() || std::chrono::steady_clock::now() >= end) co_return line;
    co_await sleep_for(20ms);
  }
}

}  // namespace

TEST_CASE("participants in different elections lead on one session lease and each has its own key",
          "[session]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    Session session(client, session_ttl(5s));
    CHECK_FALSE(session.lease_id());
    const auto lease = co_await session.start();
    REQUIRE(session.lease_id() == lease);
    CHECK(session.granted_ttl() == 5s);
    REQUIRE(session.deadline());
    const auto base = unique_name("session-many");
    std::vector<Participant> shards;
    for (int i = 0; i < 5; ++i)
      shards.emplace_back(session, base + "-" + std::to_string(i), "v" + std::to_string(i));
    for (auto& p : shards) {
      const auto key = co_await p.campaign();
      CHECK(key.lease == lease);
      CHECK(key.key == p.election() + "/" + hex(lease));
      CHECK(p.is_leader());
      CHECK(p.granted_ttl() == 5s);
    }
    // Still one lease after a few renewal periods: nothing else was granted.
    co_await sleep_for(2500ms);
    for (auto& p : shards) {
      CHECK(p.is_leader());
      CHECK(p.lease_id() == lease);
    }
    CHECK(session.lease_id() == lease);
    for (auto& p : shards) co_await p.resign();
  });
}

TEST_CASE("a second participant of one session in the same election is refused", "[session]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    Session session(client);
    const auto name = unique_name("session-twice");
    Participant first(session, name, "a");
    try {
      Participant second(session, name, "b");
      FAIL("a second participant in '" << name << "' was accepted");
    } catch (const system_error& e) {
      CHECK(e.code() == errc::invalid_argument);
      CHECK_THAT(e.what(), Catch::Contains(name));
    }
    // Nesting is refused as for any participant of the Client.
    try {
      Participant nested(session, name + "/inner", "c");
      FAIL("a nested election was accepted");
    } catch (const system_error& e) {
      CHECK(e.code() == errc::invalid_argument);
    }
    // Once the first is gone its election is free again on this session.
    { Participant gone = std::move(first); }
    Participant again(session, name, "d");
    const auto key = co_await again.campaign();
    CHECK(again.is_leader());
    co_await again.resign();
    CHECK_FALSE(key.key.empty());
  });
}

TEST_CASE("resigning one participant deletes its key only: the lease and the others stay",
          "[session]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    Session session(client, session_ttl(5s));
    const auto base = unique_name("session-resign");
    Participant a(session, base + "-a", "a");
    Participant b(session, base + "-b", "b");
    const auto ka = co_await a.campaign();
    const auto kb = co_await b.campaign();
    REQUIRE(ka.lease == kb.lease);
    co_await a.resign();
    CHECK_FALSE(a.is_leader());
    CHECK(b.is_leader());
    CHECK(session.lease_id() == ka.lease);
    const auto line_a = co_await line_of(client, a.election());
    const auto line_b = co_await line_of(client, b.election());
    CHECK(line_a.empty());
    REQUIRE(line_b.size() == 1);
    CHECK(line_b[0] == kb.key);
    // etcd still has the lease: b keeps leading past a TTL.
    co_await sleep_for(6s);
    CHECK(b.is_leader());
    // a campaigns again on the same lease, with the same key.
    const auto again = co_await a.campaign();
    CHECK(again.key == ka.key);
    CHECK(again.create_revision > ka.create_revision);
    // Destroying b deletes its key too, and leaves a leading.
    { Participant gone = std::move(b); }
    // The deletion goes out in the background.
    const auto after = co_await line_emptied(client, base + "-b", 3000ms);
    CHECK(after.empty());
    CHECK(a.is_leader());
    co_await a.resign();
  });
}

TEST_CASE(
    "the session's lease revoked by another process ends every leadership and a new lease follows",
    "[session]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        Session session(client, session_ttl(5s));
        const auto base = unique_name("session-revoked");
        Participant a(session, base + "-a", "a");
        Participant b(session, base + "-b", "b");
        const auto ka = co_await a.campaign();
        co_await b.campaign();
        std::optional<error_code> a_end, b_end;
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(
            ex, [&]() -> asio::awaitable<void> { a_end = co_await a.keep_alive(); },
            asio::detached);
        asio::co_spawn(
            ex, [&]() -> asio::awaitable<void> { b_end = co_await b.keep_alive(); },
            asio::detached);
        REQUIRE(etcdctl("lease revoke " + hex(ka.lease)) == 0);
        co_await require_within([&] { return a_end && b_end; }, 3s, "both leaderships to end");
        CHECK_FALSE(a.is_leader());
        CHECK_FALSE(b.is_leader());
        // The key went with the lease; each leadership says why it ended.
        CHECK((*a_end == errc::lease_expired || *a_end == errc::key_deleted));
        CHECK((*b_end == errc::lease_expired || *b_end == errc::key_deleted));
        co_await require_within([&] { return !session.lease_id(); }, 3s,
                                "the session to know its lease is gone");
        // The next campaign grants the session a new lease, and every participant uses it.
        const auto na = co_await a.campaign();
        const auto nb = co_await b.campaign();
        CHECK(na.lease != ka.lease);
        CHECK(nb.lease == na.lease);
        CHECK(session.lease_id() == na.lease);
        co_await a.resign();
        co_await b.resign();
      },
      40s);
}

TEST_CASE(
    "past the session's deadline its leaders stop leading and its candidates keep their place",
    "[session][suspend]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    election::Client client(ex, fixture_options());
    election::Client other(ex, fixture_options());
    Session session(client, session_ttl(10s));
    const auto base = unique_name("session-deadline");
    Participant leader(session, base + "-lead", "a");
    Participant holder(other, base + "-wait", "first");
    Participant waiter(session, base + "-wait", "second");
    co_await leader.campaign();
    co_await holder.campaign();
    std::optional<election::LeaderKey> waiter_won;
    asio::co_spawn(
        ex, [&]() -> asio::awaitable<void> { waiter_won = co_await waiter.campaign(); },
        asio::detached);
    co_await require_within([&] { return waiter.lease_id().has_value(); }, 3s, "waiter in line");
    co_await sleep_for(200ms);
    std::optional<error_code> ended;
    asio::co_spawn(
        ex, [&]() -> asio::awaitable<void> { ended = co_await leader.keep_alive(); },
        asio::detached);
    // The host sleeps 30 s (acted out on the Client's time source): the leader knows at once.
    election::detail::access::core(client)->time().suspend_for(30s);
    CHECK_FALSE(leader.is_leader());
    co_await require_within([&] { return ended.has_value(); }, 2s, "keep_alive() to end");
    CHECK(*ended == errc::lease_deadline_passed);
    // etcd never lost the lease (the skew is local): the candidate is still in line, second.
    const auto line = co_await line_of(other, base + "-wait");
    REQUIRE(line.size() == 2);
    CHECK(line[1] == base + "-wait/" + hex(*session.lease_id()));
    // and leads once the holder goes, on the same lease, renewed again meanwhile.
    co_await holder.resign();
    co_await require_within([&] { return waiter_won.has_value(); }, 5s, "the waiter to lead");
    CHECK(waiter.is_leader());
    CHECK(waiter_won->lease == *session.lease_id());
    co_await waiter.resign();
  });
}

TEST_CASE(
    "a Session destroyed first revokes its lease: its participants stop and later campaigns fail",
    "[session]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    auto session = std::make_unique<Session>(client, session_ttl(5s));
    const auto name = unique_name("session-gone");
    Participant p(*session, name, "a");
    const auto key = co_await p.campaign();
    session.reset();
    CHECK_FALSE(p.is_leader());
    const auto line = co_await line_emptied(client, name, 3000ms);
    CHECK(line.empty());  // revoked: the key went with the lease
    const auto again = co_await error_of([&] { return p.campaign(); });
    CHECK(again == errc::invalid_argument);
    CHECK(etcdctl("lease timetolive " + hex(key.lease) + " | grep -q 'already expired'") == 0);
  });
}

TEST_CASE("Leaderships on one session lead their elections and all come back after the lease goes",
          "[session][leadership]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        Session session(client, session_ttl(3s));
        const auto base = unique_name("session-leadership");
        std::vector<election::LeaderKey> won;
        std::vector<std::string> lost;
        election::LeadershipHooks hooks;
        hooks.elected = [&](const election::LeaderKey& k) { won.push_back(k); };
        hooks.lost = [&](const election::LeadershipLost& l) {
          lost.push_back(election::reason_name(l.reason));
        };
        election::LeadershipOptions options;
        options.retry_initial = 50ms;
        options.retry_max = 200ms;
        auto work = [](Participant&, const election::LeaderKey&) -> asio::awaitable<void> {
          co_await sleep_for(24h);
        };
        int finished = 0;
        std::vector<std::unique_ptr<election::Leadership>> shards;
        for (int i = 0; i < 3; ++i)
          shards.push_back(std::make_unique<election::Leadership>(
              session, base + "-" + std::to_string(i), "v", work, options, hooks));
        for (auto& l : shards) l->async_run([&](error_code) { ++finished; });
        co_await require_within([&] { return won.size() == 3; }, 5s, "three leaderships");
        const auto first_lease = won[0].lease;
        for (const auto& k : won) CHECK(k.lease == first_lease);
        REQUIRE(etcdctl("lease revoke " + hex(first_lease)) == 0);
        co_await require_within([&] { return won.size() == 6; }, 10s,
                                "all three to lead again on a new lease");
        CHECK(lost.size() == 3);
        for (std::size_t i = 3; i < 6; ++i) {
          CHECK(won[i].lease != first_lease);
          CHECK(won[i].lease == won[3].lease);
        }
        for (auto& l : shards) l->stop();
        co_await require_within([&] { return finished == 3; }, 5s, "the loops to stop");
        for (int i = 0; i < 3; ++i) {
          const auto line = co_await line_of(client, base + "-" + std::to_string(i));
          CHECK(line.empty());
        }
        // Stopping them deleted their keys only: the session's lease lives on.
        CHECK(session.lease_id() == won[3].lease);
      },
      40s);
}

TEST_CASE("5000 campaigns in 5000 elections started at once all lead with a 1 s request timeout",
          "[session][scale]") {
  run(
      []() -> asio::awaitable<void> {
        auto options = fixture_options();
        // Attempts of 500 ms (the least): 5000 lease grants sent at once are not all answered
        // that soon, and each retry only adds to the pile. Waiting their turn, they are.
        options.request_timeout = 1s;
        election::Client client(co_await asio::this_coro::executor, options);
        const auto base = unique_name("herd");
        constexpr int n = 5000;
        election::ParticipantOptions each;
        each.ttl = 30s;  // a deadline of its own no slow (sanitizer) build reaches here
        each.takeover_delay = 0ms;
        std::vector<std::unique_ptr<Participant>> shards;
        int won = 0, failed = 0;
        std::string failure;
        auto ex = co_await asio::this_coro::executor;
        for (int i = 0; i < n; ++i) {
          shards.push_back(
              std::make_unique<Participant>(client, base + "/" + std::to_string(i), "v", each));
          Participant* p = shards.back().get();
          asio::co_spawn(
              ex,
              [p, &won]() -> asio::awaitable<void> {
                co_await p->campaign();
                ++won;
              },
              [&](std::exception_ptr e) {
                if (!e) return;
                ++failed;
                try {
                  std::rethrow_exception(e);
                } catch (const std::exception& x) {
                  if (failure.empty()) failure = x.what();
                }
              });
        }
        co_await require_within([&] { return won + failed == n; }, 80s, "every campaign to end");
        INFO("the first failure: " << failure);
        CHECK(failed == 0);
        CHECK(won == n);
        shards.clear();
        co_await sleep_for(500ms);
      },
      100s);
}
