// Graceful handover: the leader resigns -> the waiting successor's campaign() returns.
//
//   ours:    two Participants, each on its own Client and its own thread (as two processes
//            would be: on one thread the successor's wake-up queued behind the resigner's own
//            reply, 75-150 us of probes' p50), in this process; the clock starts before
//            resign() and stops when the successor's campaign() returns.
//            Not on connections of their own: gRPC gives every Client of this process (the
//            same target and channel arguments) one shared HTTP/2 connection to etcd, the
//            floor's Clients too (`ss -tnp` shows one while this runs). Each Client on its own
//            connection (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL) was tried on 2026-12-07: ours
//            the same, the floor faster.
//            With default options (the takeover delay this etcd gets: 200 ms on 3.4.23, waited
//            only after a deletion that its owner did not sign), and beside it with the delay
//            off (0), as etcdctl has none.
//   floor:   the least etcd allows with the same gRPC stack: a bare DeleteRange of a key -> a
//            watcher on another Client, on the other thread, receives the DELETE event. Beside
//            it, the same with the signed resignation's own request (a guarded Txn of the
//            deletion and the signature's put, with a lease), to tell the request's cost from
//            the library's. Each floor request leaves after the same idle as ours (`settle`):
//            after 200 ms with nothing to do, this machine takes about a quarter of a
//            millisecond longer for the same delete -> event than after 20 ms (waking from
//            idle, in this process or etcd's; not traced further), so a floor timed after a
//            shorter idle would count that against the library. The floor after 20 ms is
//            printed beside.
//   etcdctl: two `etcdctl elect` processes; SIGINT to the leader (etcdctl resigns on it) -> the
//            successor prints its key.
// Rounds of the three alternate, so they see the same etcd, disk and load.
//
// The successor has waited in line for `settle` (200 ms) when the leader steps down: etcd
// delivers events to a watch that started at a past revision only from its sync loop, every
// 100 ms, until the watch has caught up. A handover right after queueing would measure that
// loop; the steady state, which every later handover sees, is what is measured here.
#include "api/access.hpp"
#include "common.hpp"

#include "process_handover.hpp"
#include "raw_watch.hpp"
#include "transport/kv.hpp"

#include <atomic>
#include <csignal>
#include <iostream>
#include <mutex>

namespace election::bench {
namespace {

constexpr auto settle = 200ms;

// A time set on one thread and read on another.
struct Stamp {
  std::atomic<std::int64_t> at{0};
  void reset() { at = 0; }
  void set() { at = now_us(); }
  bool has_value() const { return at.load() != 0; }
  std::int64_t operator*() const { return at.load(); }
};

// The first failure of the background work, whichever thread it was on.
struct Failure {
  std::mutex mutex;
  std::exception_ptr first;
  void set(std::exception_ptr e) {
    std::lock_guard lock(mutex);
    if (!first) first = std::move(e);
  }
  bool failed() {
    std::lock_guard lock(mutex);
    return first != nullptr;
  }
  void check() {
    std::lock_guard lock(mutex);
    if (first) std::rethrow_exception(first);
  }
};

// Runs `f` on `executor` and waits for it.
template <class F>
asio::awaitable<void> on(asio::any_io_executor executor, F f) {
  co_await asio::co_spawn(
      executor,
      [&f]() -> asio::awaitable<void> {
        f();
        co_return;
      },
      asio::use_awaitable);
}

struct Handover {
  std::vector<std::string> endpoints;
  std::optional<std::chrono::milliseconds> delay;  // unset: the default
  std::optional<Client> client_a, client_b, client_w, client_d;
  std::optional<Participant> a, b;
  Participant* leader = nullptr;
  Participant* waiter = nullptr;
  std::string name;
  asio::any_io_executor far;  // the second party's thread: client_b and client_w
  Stamp won_at;
  std::atomic<std::int64_t> waited_ms{-1};  // of the takeover delay, by the last win
  Failure failure;

  std::string floor_key;
  std::optional<detail::KeyWatch> watch;
  Stamp deleted_seen_at;
  std::int64_t floor_lease = 0;

  // The thread of `p`'s Client: a's is this one, b's is `far`.
  asio::any_io_executor executor_of(const Participant* p) {
    return p == &*a ? client_a->get_executor() : client_b->get_executor();
  }

  // The waiter campaigns in the background; its win is timed the moment campaign() returns.
  void spawn_campaign(Participant* p) {
    won_at.reset();
    asio::co_spawn(
        executor_of(p),
        [this, p]() -> asio::awaitable<void> {
          co_await p->campaign();
          // Read on the winner's thread, before the win is stamped.
          const auto wait = p->takeover_wait();
          waited_ms = wait ? wait->count() : -1;
          won_at.set();
        },
        [this](std::exception_ptr e) {
          if (e) failure.set(e);
        });
  }

  void check() { failure.check(); }

  asio::awaitable<void> setup() {
    auto ex = co_await asio::this_coro::executor;
    client_a.emplace(ex, client_options(endpoints));
    co_await on(far, [&] {
      client_b.emplace(far, client_options(endpoints));
      client_w.emplace(far, client_options(endpoints));
    });
    client_d.emplace(ex, client_options(endpoints));
    name = unique("handover");
    ParticipantOptions options;
    options.takeover_delay = delay;
    a.emplace(*client_a, name, "a", options);
    co_await on(far, [&] { b.emplace(*client_b, name, "b", options); });
    co_await a->campaign();
    leader = &*a;
    waiter = &*b;
    spawn_campaign(waiter);

    floor_key = unique("handover-floor");
    auto& core = *election::detail::access::core(*client_d);
    etcdserverpb::LeaseGrantRequest grant;
    grant.set_ttl(3600);  // revoked in teardown(); for the signed floor's keys
    floor_lease =
        (co_await core.call("lease grant", core.lease().async(),
                            &etcdserverpb::Lease::Stub::async::LeaseGrant, std::move(grant)))
            .id();
    const auto revision = co_await put_key(core, floor_key, "0");
    watch.emplace(election::detail::access::core(*client_w), floor_key, std::string{},
                  revision + 1);
  }

  // Returns milliseconds from resign() to the successor's win.
  asio::awaitable<double> ours_round() {
    co_await wait_count(*election::detail::access::core(*client_a), name + "/", 2, 10s);
    co_await sleep_for(settle);  // see the top of this file
    check();
    // Timed on the leader's own thread, as a caller in its process would call resign().
    std::int64_t t0 = 0;
    co_await asio::co_spawn(
        executor_of(leader),
        [&]() -> asio::awaitable<void> {
          t0 = now_us();
          co_await leader->resign();
        },
        asio::use_awaitable);
    co_await require_within([this] { return won_at.has_value() || failure.failed(); }, 10s,
                            "the successor to win");
    check();
    const auto took = *won_at - t0;
    std::swap(leader, waiter);
    spawn_campaign(waiter);
    co_return ms(took);
  }

  // Milliseconds the last win waited of the takeover delay (0 after a signed resignation).
  double last_wait() const { return static_cast<double>(waited_ms.load()); }

  // Returns milliseconds from sending the delete to the watcher's event. `signed_shape`: the
  // key is put with a lease and removed by the signed resignation's own request (the guarded
  // Txn of the deletion and the signature's put, kv.cpp's signed_resignation), to tell what the
  // request's shape costs from what the library adds.
  asio::awaitable<double> floor_round(bool signed_shape, std::chrono::milliseconds idle) {
    auto* core = election::detail::access::core(*client_d).get();
    std::int64_t created = 0;
    if (signed_shape) {
      etcdserverpb::PutRequest put;
      put.set_key(floor_key);
      put.set_value("x");
      put.set_lease(floor_lease);
      auto reply = co_await core->call("put", core->kv().async(),
                                       &etcdserverpb::KV::Stub::async::Put, std::move(put));
      created = reply.header().revision();
    } else {
      co_await put_key(*core, floor_key, "x");
    }
    // The watcher reads in the background, so the event is timed when it arrives, not when
    // the delete's own reply has come back.
    Stamp put_seen;
    deleted_seen_at.reset();
    auto reader = [this, &put_seen]() -> asio::awaitable<void> {
      for (int i = 0; i < 4 && !deleted_seen_at.has_value(); ++i) {
        auto batch = co_await watch->next();
        for (const auto& e : batch.events) {
          if (e.type() == mvccpb::Event::PUT) put_seen.set();
          if (e.type() == mvccpb::Event::DELETE) deleted_seen_at.set();
        }
      }
    };
    auto on_done = [this](std::exception_ptr e) {
      if (e) failure.set(e);
    };
    asio::co_spawn(client_w->get_executor(), reader, on_done);
    co_await require_within([&] { return put_seen.has_value() || failure.failed(); }, 10s,
                            "the put event");
    check();
    co_await sleep_for(idle);  // as long as ours has waited when it resigns: see the top
    const auto t0 = now_us();
    if (signed_shape) {
      auto request = election::detail::signed_resignation(floor_key + "-signed", floor_key, created,
                                                          floor_lease);
      auto reply = co_await core->call("txn", core->kv().async(),
                                       &etcdserverpb::KV::Stub::async::Txn, std::move(request));
      if (!reply.succeeded()) throw std::runtime_error("the floor's signed Txn found no key");
    } else {
      co_await bench::delete_key(*core, floor_key);
    }
    co_await require_within([&] { return deleted_seen_at.has_value() || failure.failed(); }, 10s,
                            "the delete event");
    check();
    co_return ms(*deleted_seen_at - t0);
  }

  asio::awaitable<void> teardown() {
    // The last leader resigns, its successor wins and resigns too, then everything goes.
    if (leader) {
      co_await leader->resign();
      co_await require_within([this] { return won_at.has_value() || failure.failed(); }, 10s,
                              "the last successor to win");
      co_await waiter->resign();
    }
    if (client_d) {
      auto& core = *election::detail::access::core(*client_d);
      etcdserverpb::LeaseRevokeRequest revoke;
      revoke.set_id(floor_lease);
      co_await core.call("lease revoke", core.lease().async(),
                         &etcdserverpb::Lease::Stub::async::LeaseRevoke, std::move(revoke));
    }
    co_await on(far, [&] {
      watch.reset();
      b.reset();
      client_b.reset();
      client_w.reset();
    });
    a.reset();
    client_a.reset();
    client_d.reset();
  }
};

ProcessHandover::Program etcdctl_elect(const Config& config, const Etcd& etcd) {
  return {"etcdctl elect",
          [&config, endpoint = etcd.endpoint()](const std::string& name, const std::string& value) {
            return std::vector<std::string>{config.etcdctl, "--endpoints=" + endpoint, "elect",
                                            name, value};
          },
          [](const std::string&) { return true; },  // its first line is its key
          SIGINT, "handover-etcdctl.err"};
}

ProcessHandover::Program leader_worker(const Config& config, const Etcd& etcd) {
  return {"leader-worker",
          [&config, endpoint = etcd.endpoint()](const std::string& name, const std::string& node) {
            return std::vector<std::string>{config.worker, "--endpoints", endpoint, "--election",
                                            name,          "--node",      node,     "--json"};
          },
          [](const std::string& line) {
            return line.find("\"event\":\"elected\"") != std::string::npos;
          },
          SIGTERM, "handover-worker.err"};
}

}  // namespace

int run_handover(const Config& config) {
  const int rounds = config.quick ? 5 : 60;
  const int ctl_rounds = config.quick ? 2 : 60;
  Etcd etcd(config, "handover");
  IoThread io, far;
  Handover h;  // default options
  h.endpoints = etcd.endpoints();
  h.far = far.executor();
  io.sync(h.setup(), 30s, "handover setup");
  Handover off;  // the takeover delay off
  off.endpoints = etcd.endpoints();
  off.delay = std::chrono::milliseconds(0);
  off.far = far.executor();
  io.sync(off.setup(), 30s, "handover setup (delay off)");

  std::optional<Client> probe;
  io.sync(
      [&]() -> asio::awaitable<void> {
        probe.emplace(co_await asio::this_coro::executor, client_options(etcd.endpoints()));
        co_await probe->connect();
      }(),
      10s, "probe client");
  ProcessHandover ctl(config, io, *probe, etcdctl_elect(config, etcd));
  ctl.setup();
  ProcessHandover worker(config, io, *probe, leader_worker(config, etcd));
  worker.setup();

  Samples ours, ours_off, floor, waited, peer, worker_ms, floor_txn, floor_short;
  // One warm-up round of each (fresh connections, first allocations) is not counted.
  for (int r = -1; r < std::max(rounds, ctl_rounds); ++r) {
    if (r < rounds) {
      const double o = io.sync(h.ours_round(), 30s, "handover round");
      const double w = h.last_wait();
      const double z = io.sync(off.ours_round(), 30s, "handover round (delay off)");
      const double f = io.sync(h.floor_round(false, settle), 30s, "floor round");
      const double t = io.sync(h.floor_round(true, settle), 30s, "floor round (signed Txn)");
      const double q = io.sync(h.floor_round(false, 20ms), 30s, "floor round (20 ms idle)");
      if (r >= 0) {
        ours.add(o);
        waited.add(w);
        ours_off.add(z);
        floor.add(f);
        floor_txn.add(t);
        floor_short.add(q);
      }
    }
    if (r < ctl_rounds) {
      const double c = ctl.round(r + 1);
      const double w = worker.round(r + 1);
      if (r >= 0) {
        peer.add(c);
        worker_ms.add(w);
      }
    }
  }
  worker.teardown();
  ctl.teardown();
  io.sync(h.teardown(), 30s, "handover teardown");
  io.sync(off.teardown(), 30s, "handover teardown (delay off)");
  io.sync(
      [&]() -> asio::awaitable<void> {
        probe.reset();
        co_return;
      }(),
      10s, "probe teardown");

  Results results("handover");
  const std::string floor_name = "floor: delete -> watch event";
  const std::string ctl_name = "etcdctl elect (SIGINT)";
  const auto ratio_met = [](double ours_v, double base, double limit) {
    return ours_v <= base * limit ? 1 : 0;
  };
  char note[200];
  std::snprintf(note, sizeof note,
                "resign() -> successor's campaign() returns, default options; the successor "
                "waited %.0f ms of the takeover delay (max of %zu rounds); floor rounds: %zu",
                waited.percentile(100), waited.size(), floor.size());
  results.add(Row{"handover p50", "ms", ours.percentile(50), floor_name, floor.percentile(50),
                  "<= 1.3x floor", ratio_met(ours.percentile(50), floor.percentile(50), 1.3),
                  ours.size(), note});
  results.add(Row{"handover p50", "ms", ours.percentile(50), ctl_name, peer.percentile(50),
                  "< etcdctl", ours.percentile(50) < peer.percentile(50) ? 1 : 0, ours.size(),
                  "etcdctl rounds: " + std::to_string(peer.size())});
  results.add(Row{"handover p99", "ms", ours.percentile(99), floor_name, floor.percentile(99), "",
                  -1, ours.size(), ""});
  results.add(Row{"handover p99", "ms", ours.percentile(99), ctl_name, peer.percentile(99), "", -1,
                  ours.size(), ""});
  results.add(Row{"handover p50", "ms", ours.percentile(50), "floor: signed Txn -> watch event",
                  floor_txn.percentile(50), "", -1, ours.size(),
                  "the floor with the library's own request: the guarded Txn of the deletion "
                  "and the signature's put, keys with a lease"});
  results.add(Row{"handover p50", "ms", ours.percentile(50), "floor, after 20 ms idle",
                  floor_short.percentile(50), "", -1, ours.size(),
                  "the floor's request sent 20 ms after its last one instead of 200 ms, as ours "
                  "is: the difference is the idle before it (its cause not traced)"});
  results.add(Row{"handover p50, takeover delay off", "ms", ours_off.percentile(50), floor_name,
                  floor.percentile(50), "", -1, ours_off.size(),
                  "the same with ParticipantOptions::takeover_delay = 0, beside the default"});
  results.add(Row{"process handover p50", "ms", worker_ms.percentile(50), ctl_name,
                  peer.percentile(50), "<= etcdctl",
                  worker_ms.percentile(50) <= peer.percentile(50) ? 1 : 0, worker_ms.size(),
                  "leader-worker SIGTERM -> successor's elected line, default options, "
                  "rounds alternating with etcdctl's"});
  results.add(Row{"process handover p99", "ms", worker_ms.percentile(99), ctl_name,
                  peer.percentile(99), "", -1, worker_ms.size(), ""});
  results.print();
  results.write(config.out);
  return 0;
}

}  // namespace election::bench
