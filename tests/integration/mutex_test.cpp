// election::Mutex against a real etcd: its own rules (try_lock, fencing, the lost signal, bad
// names, a key already on its lease) and one queue with `etcdctl lock` (Debian's 3.4.23, which
// runs etcd's Go client-side concurrency.Mutex), both ways.
#include "api/access.hpp"
#include "base/keys.hpp"
#include "election/election.hpp"
#include "etcd/v3lock.grpc.pb.h"
#include "support/names.hpp"
#include "support/options.hpp"
#include "support/process.hpp"
#include "support/run.hpp"
#include "transport/client_core.hpp"
#include "transport/kv.hpp"

#include <grpcpp/create_channel.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <optional>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::system_error;
using election::errc;
using election::LockKey;
using election::Mutex;
using election::test::fixture_options;
using election::test::require_within;
using election::test::run;
using election::test::sleep_for;
using election::test::ttl;
using Steady = std::chrono::steady_clock;

namespace {

std::string endpoint() { return fixture_options().endpoints.front(); }

std::filesystem::path work_path(const std::string& name) {
  auto dir = std::filesystem::path(ELECTION_TEST_WORK_DIR);
  std::filesystem::create_directories(dir);
  return dir / (name + "-" + std::to_string(::getpid()));
}

void etcdctl(const std::string& args) {
  const auto command =
      "ETCDCTL_API=3 etcdctl --endpoints=" + endpoint() + " " + args + " >/dev/null";
  REQUIRE(std::system(command.c_str()) == 0);
}

// `etcdctl lock NAME`: prints the key it holds once it has the lock, holds it until SIGINT.
election::test::ChildProcess etcdctl_lock(const std::string& name, const std::string& tag) {
  return election::test::ChildProcess({"etcdctl", "--endpoints=" + endpoint(), "lock", name},
                                      work_path("mutex-" + tag + ".out"), {"ETCDCTL_API=3"});
}

bool holds(const election::test::ChildProcess& ctl, const std::string& name) {
  return ctl.output().find(name + "/") != std::string::npos;
}

// The keys in the lock's queue.
asio::awaitable<std::size_t> queued(election::Client& client, const std::string& name) {
  auto reply = co_await election::detail::range(*election::detail::access::core(client), name + "/",
                                                election::detail::prefix_end(name + "/"));
  co_return static_cast<std::size_t>(reply.kvs_size());
}

struct Locked {
  std::optional<LockKey> key;
  Steady::time_point at;
};

asio::awaitable<void> lock_into(Mutex& m, Locked& out) {
  out.key = co_await m.lock();
  out.at = Steady::now();
}

template <class F>
asio::awaitable<boost::system::error_code> failure_of(F f) {
  try {
    co_await f();
  } catch (const system_error& e) {
    co_return e.code();
  }
  co_return boost::system::error_code{};
}

}  // namespace

TEST_CASE("try_lock takes a free lock and is refused a held one, leaving no key", "[mutex]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    election::Client other(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("try");
    Mutex a(client, name, ttl(5s));
    Mutex b(other, name, ttl(5s));
    auto key = co_await a.try_lock();
    CHECK(a.is_held());
    CHECK(key.key == name + "/" + election::lease_hex(key.lease));
    REQUIRE(a.fencing_revision());
    CHECK(*a.fencing_revision() == key.create_revision);

    const auto refused = co_await failure_of([&] { return b.try_lock(); });
    CHECK(refused == errc::lock_held);
    CHECK_FALSE(b.is_held());
    const auto in_line = co_await queued(client, name);
    CHECK(in_line == 1);  // b's key went with its refusal

    // b waits in line; a's unlock is signed, so b takes over without the takeover delay.
    Locked got;
    asio::co_spawn(co_await asio::this_coro::executor, lock_into(b, got), asio::detached);
    co_await sleep_for(300ms);
    co_await a.unlock();
    CHECK_FALSE(a.is_held());
    co_await require_within([&] { return got.key.has_value(); }, 3s, "b to take the lock");
    CHECK(got.key->create_revision > key.create_revision);
    REQUIRE(b.participant().takeover_wait());
    CHECK(*b.participant().takeover_wait() == 0ms);
    co_await b.unlock();
  });
}

TEST_CASE("a lock is fenced: a hold ended by an operator's delete refuses the late write",
          "[mutex]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("fenced");
    const auto guarded = election::test::unique_name("guarded");
    Mutex m(client, name, ttl(5s));
    auto key = co_await m.lock();
    const auto written = co_await m.put_if_held(guarded, "1");
    CHECK(written > key.create_revision);

    etcdctl("del " + key.key);
    const auto reason = co_await m.wait_lost();
    CHECK(reason == errc::key_deleted);
    CHECK_FALSE(m.is_held());
    const auto late = co_await failure_of([&] { return m.put_if_held(guarded, "2"); });
    CHECK(late == errc::not_leader);
  });
}

TEST_CASE("bad lock names are refused before anything is sent", "[mutex]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("names");
    auto code_of = [](auto make) {
      try {
        make();
      } catch (const system_error& e) {
        return e.code();
      }
      return boost::system::error_code{};
    };
    CHECK(code_of([&] { Mutex m(client, ""); }) == errc::invalid_election_name);
    CHECK(code_of([&] { Mutex m(client, name + "/"); }) == errc::invalid_election_name);
    election::Participant election(client, name, "v", ttl(5s));
    // A lock inside an election's prefix, or around it, on one Client.
    CHECK(code_of([&] { Mutex m(client, name + "/lock"); }) == errc::invalid_argument);
    Mutex inner(client, name + "-lock");
    CHECK(code_of([&] { Mutex m(client, name + "-lock/x"); }) == errc::invalid_argument);
    co_return;
  });
}

TEST_CASE("a key already on the lock's lease is the same acquisition", "[mutex]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    election::Session session(client, {.ttl = 5s});
    co_await session.start();
    const auto name = election::test::unique_name("twice");
    const auto hex = election::lease_hex(*session.lease_id());
    // As a lock made before on this lease left it (a process that took it, then restarted
    // with its session): etcd's Lock RPC takes that key as the lock again.
    etcdctl("put --lease=" + hex + " " + name + "/" + hex + " ''");
    Mutex m(session, name);
    // etcd's revision moves on elsewhere after the Mutex has read its queue: the entry finds
    // its key and writes nothing, and no event of the queue will come (it once waited for one
    // forever; found when ctest ran tests side by side).
    co_await sleep_for(300ms);
    etcdctl("put " + name + "-elsewhere x");
    auto key = co_await m.lock();
    CHECK(key.key == name + "/" + hex);
    CHECK(key.lease == *session.lease_id());
    const auto in_line = co_await queued(client, name);
    CHECK(in_line == 1);
    co_await m.unlock();
    session.close();
  });
}

TEST_CASE("etcdctl lock holds: our Mutex waits and takes it when etcdctl lets go",
          "[mutex][interop]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        const auto name = election::test::unique_name("ctl-first");
        auto ctl = etcdctl_lock(name, "ctl-first");
        co_await require_within([&] { return holds(ctl, name); }, 5s, "etcdctl to take the lock");

        // The default (the takeover delay this etcd gets: etcdctl's unlock is not signed).
        Mutex ours(client, name, ttl(5s));
        Locked got;
        asio::co_spawn(co_await asio::this_coro::executor, lock_into(ours, got), asio::detached);
        co_await sleep_for(700ms);
        CHECK_FALSE(got.key);
        const auto released = Steady::now();
        ctl.signal(SIGINT);
        co_await require_within([&] { return got.key.has_value(); }, 5s, "our lock after SIGINT");
        const auto waited = *ours.participant().takeover_wait();
        const auto took = got.at - released;
        INFO("took the lock " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                              << " ms after SIGINT, of which the takeover delay " << waited.count()
                              << " ms");
        CHECK(waited > 100ms);  // unsigned: the guard held
        CHECK(took < waited + 100ms);
        co_await ours.unlock();
        ctl.wait();

        // With the delay off (an etcd with the stale-leader fix): within 100 ms of SIGINT.
        const auto name2 = election::test::unique_name("ctl-first-nodelay");
        auto ctl2 = etcdctl_lock(name2, "ctl-first-nodelay");
        co_await require_within([&] { return holds(ctl2, name2); }, 5s, "etcdctl to lock again");
        election::MutexOptions no_delay = ttl(5s);
        no_delay.takeover_delay = 0ms;
        Mutex fast(client, name2, no_delay);
        Locked got2;
        asio::co_spawn(co_await asio::this_coro::executor, lock_into(fast, got2), asio::detached);
        co_await sleep_for(700ms);
        CHECK_FALSE(got2.key);
        const auto released2 = Steady::now();
        ctl2.signal(SIGINT);
        co_await require_within([&] { return got2.key.has_value(); }, 5s, "the lock, no delay");
        const auto took2 = got2.at - released2;
        INFO(
            "took the lock " << std::chrono::duration_cast<std::chrono::milliseconds>(took2).count()
                             << " ms after SIGINT");
        CHECK(took2 < 100ms);
        co_await fast.unlock();
        ctl2.wait();
      },
      40s);
}

TEST_CASE("our Mutex holds: etcdctl lock waits and takes it on our unlock", "[mutex][interop]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        const auto name = election::test::unique_name("ours-first");
        Mutex ours(client, name, ttl(5s));
        co_await ours.lock();
        auto ctl = etcdctl_lock(name, "ours-first");
        co_await sleep_for(700ms);
        CHECK_FALSE(holds(ctl, name));
        const auto in_line = co_await queued(client, name);
        CHECK(in_line == 2);
        co_await ours.unlock();
        co_await require_within([&] { return holds(ctl, name); }, 3s, "etcdctl to take the lock");
        ctl.signal(SIGINT);
        ctl.wait();
      },
      30s);
}

TEST_CASE("a queue of three, ours and etcdctl's mixed, takes the lock in order",
          "[mutex][interop]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        election::Client other(co_await asio::this_coro::executor, fixture_options());
        const auto name = election::test::unique_name("three");
        Mutex first(client, name, ttl(5s));
        co_await first.lock();
        auto ctl = etcdctl_lock(name, "three");
        co_await sleep_for(700ms);  // etcdctl's key in line second
        CHECK_FALSE(holds(ctl, name));
        Mutex third(other, name, ttl(5s));
        Locked got;
        asio::co_spawn(co_await asio::this_coro::executor, lock_into(third, got), asio::detached);
        co_await sleep_for(500ms);
        const auto in_line = co_await queued(client, name);
        REQUIRE(in_line == 3);

        co_await first.unlock();
        co_await require_within([&] { return holds(ctl, name); }, 3s, "etcdctl, second, to hold");
        co_await sleep_for(500ms);
        CHECK_FALSE(got.key);  // still behind etcdctl
        ctl.signal(SIGINT);
        co_await require_within([&] { return got.key.has_value(); }, 3s, "ours, third, to hold");
        CHECK(third.is_held());
        co_await third.unlock();
        ctl.wait();
      },
      40s);
}

TEST_CASE("lock_loop runs the work while it holds the lock, and etcdctl waits meanwhile",
          "[mutex][interop]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        const auto name = election::test::unique_name("loop");
        const auto guarded = election::test::unique_name("loop-state");
        int writes = 0;
        election::LeadershipOptions options;
        options.participant = ttl(5s);
        auto loop = election::lock_loop(
            client, name,
            [&](election::Participant& holder, LockKey) -> asio::awaitable<void> {
              for (;;) {
                co_await holder.put_if_leader(guarded, std::to_string(++writes));
                co_await sleep_for(100ms);
              }
            },
            options);
        asio::co_spawn(co_await asio::this_coro::executor, loop.run(), asio::detached);
        co_await require_within([&] { return writes >= 3; }, 5s, "the work to run under the lock");
        auto ctl = etcdctl_lock(name, "loop");
        co_await sleep_for(700ms);
        CHECK_FALSE(holds(ctl, name));
        loop.stop();
        co_await require_within([&] { return holds(ctl, name); }, 3s, "etcdctl after stop()");
        const int stopped_at = writes;
        co_await sleep_for(300ms);
        CHECK(writes == stopped_at);  // the work stopped before the lock was let go
        ctl.signal(SIGINT);
        ctl.wait();
      },
      40s);
}

TEST_CASE("lock_loop: a holder whose work finishes says it lost the lock before the next holds it",
          "[mutex][hooks]") {
  // Two loops take turns: each work makes one fenced write and returns, which releases the
  // lock. The `lost` hook (and is_leader in the metrics) must come before the release lets the
  // other in: a holder reported as holding after the next one holds is an overlap in every log
  // and dashboard built on the hooks.
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        const auto name = election::test::unique_name("turns");
        const auto guarded = election::test::unique_name("turns-state");
        int holding = 0, overlaps = 0, turns = 0;
        std::string overlap_seen;
        auto loop_for = [&](const std::string& who) {
          election::LeadershipOptions options;
          options.participant = ttl(5s);
          options.retry_initial = 10ms;
          options.retry_max = 20ms;
          election::LeadershipHooks hooks;
          hooks.elected = [&, who](const LockKey&) {
            if (holding != 0) {
              ++overlaps;
              overlap_seen = who + " holds while the other has not said it lost";
            }
            ++holding;
            ++turns;
          };
          hooks.lost = [&](const election::LeadershipLost& lost) {
            // The turn that stop() ends says operation_aborted.
            CHECK((lost.reason == errc::work_finished ||
                   lost.reason == boost::asio::error::operation_aborted));
            --holding;
          };
          return election::lock_loop(
              client, name,
              [&, who](election::Participant& holder, LockKey) -> asio::awaitable<void> {
                co_await holder.put_if_leader(guarded, who);
              },
              options, hooks);
        };
        auto a = loop_for("a");
        auto b = loop_for("b");
        auto executor = co_await asio::this_coro::executor;
        asio::co_spawn(executor, a.run(), asio::detached);
        asio::co_spawn(executor, b.run(), asio::detached);
        co_await require_within([&] { return turns >= 40; }, 20s, "40 turns");
        a.stop();
        b.stop();
        INFO(overlap_seen);
        CHECK(overlaps == 0);
        co_await sleep_for(300ms);
      },
      40s);
}

TEST_CASE("a Mutex follows its lock from construction: a free lock is taken at once later",
          "[mutex]") {
  run([]() -> asio::awaitable<void> {
    election::Client client(co_await asio::this_coro::executor, fixture_options());
    const auto name = election::test::unique_name("follow");
    // Taken at once after construction: nobody can say how long ago the lock was released, so
    // the takeover delay this etcd gets is waited (200 ms on 3.4.23).
    Mutex fresh(client, name + "-fresh", ttl(5s));
    co_await fresh.lock();
    REQUIRE(fresh.participant().takeover_wait());
    CHECK(*fresh.participant().takeover_wait() > 100ms);
    co_await fresh.unlock();

    // Made, then used: the queue has been followed for longer than the delay.
    Mutex m(client, name, ttl(5s));
    co_await sleep_for(300ms);
    for (int round = 0; round < 3; ++round) {
      const auto t0 = Steady::now();
      co_await m.lock();
      const auto took = Steady::now() - t0;
      REQUIRE(m.participant().takeover_wait());
      CHECK(*m.participant().takeover_wait() == 0ms);  // after none, then after its own unlock
      CHECK(took < 100ms);
      co_await m.unlock();
    }
  });
}

namespace {

// etcd's Lock RPC, called as a Go program would (blocking, on a thread of its own), with a lease
// of its own.
struct LockRpc {
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(endpoint(), grpc::InsecureChannelCredentials());
  std::int64_t lease = 0;

  LockRpc() {
    grpc::ClientContext context;
    etcdserverpb::LeaseGrantRequest request;
    request.set_ttl(10);
    etcdserverpb::LeaseGrantResponse response;
    const auto status =
        etcdserverpb::Lease::NewStub(channel)->LeaseGrant(&context, request, &response);
    REQUIRE(status.ok());
    lease = response.id();
  }

  // The held key, once etcd granted the lock.
  std::future<std::string> lock(const std::string& name) {
    return std::async(std::launch::async, [this, name] {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + 20s);
      v3lockpb::LockRequest request;
      request.set_name(name);
      request.set_lease(lease);
      v3lockpb::LockResponse response;
      const auto status = v3lockpb::Lock::NewStub(channel)->Lock(&context, request, &response);
      if (!status.ok()) throw std::runtime_error("Lock: " + status.error_message());
      return response.key();
    });
  }

  void unlock(const std::string& key) {
    grpc::ClientContext context;
    v3lockpb::UnlockRequest request;
    request.set_key(key);
    v3lockpb::UnlockResponse response;
    REQUIRE(v3lockpb::Lock::NewStub(channel)->Unlock(&context, request, &response).ok());
  }
};

bool ready(std::future<std::string>& f) { return f.wait_for(0s) == std::future_status::ready; }

}  // namespace

TEST_CASE("etcd's Lock RPC and our Mutex wait in one queue, both ways", "[mutex][interop]") {
  run(
      []() -> asio::awaitable<void> {
        election::Client client(co_await asio::this_coro::executor, fixture_options());
        const auto name = election::test::unique_name("rpc");
        Mutex ours(client, name, ttl(5s));
        LockRpc theirs;

        // The RPC holds; ours waits, and takes the lock on the RPC's Unlock.
        auto held = theirs.lock(name);
        co_await require_within([&] { return ready(held); }, 5s, "the Lock RPC to take the lock");
        const auto their_key = held.get();
        CHECK(their_key.rfind(name + "/", 0) == 0);
        Locked got;
        asio::co_spawn(co_await asio::this_coro::executor, lock_into(ours, got), asio::detached);
        co_await sleep_for(500ms);
        CHECK_FALSE(got.key);
        theirs.unlock(their_key);
        co_await require_within([&] { return got.key.has_value(); }, 3s, "ours after Unlock");

        // Ours holds; the RPC waits, and takes it on our unlock.
        auto waiting = theirs.lock(name);
        co_await sleep_for(500ms);
        CHECK_FALSE(ready(waiting));
        co_await ours.unlock();
        co_await require_within([&] { return ready(waiting); }, 3s, "the Lock RPC after unlock");
        theirs.unlock(waiting.get());
      },
      40s);
}
