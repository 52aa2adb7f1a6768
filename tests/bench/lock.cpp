// Locks (issue 19): the handoff and an uncontended lock + unlock.
//
//   handoff, ours:    two election::Mutex on two Clients; the holder's unlock() -> the waiting
//                     one's lock() returns. Default options (the takeover delay this etcd gets,
//                     200 ms on 3.4.23, is waited only after a release nobody signed; unlock()
//                     signs).
//   handoff, etcdctl: two `etcdctl lock` processes; SIGINT to the holder (it releases on it)
//                     -> the waiting one prints its key.
//   uncontended:      lock() then unlock() of a free lock on one Mutex, with a live Client:
//                     default options, and with the takeover delay off; against the floor of
//                     one Txn (the guarded put) + one delete on the same gRPC stack.
// Rounds alternate, so all see the same etcd, disk and load.
#include "common.hpp"
#include "process_handover.hpp"
#include "transport/kv.hpp"

#include <csignal>

namespace election::bench {
namespace {

struct Handoff {
  std::vector<std::string> endpoints;
  std::optional<Client> client_a, client_b;
  std::optional<Mutex> a, b;
  Mutex* holder = nullptr;
  Mutex* waiter = nullptr;
  std::string name;
  std::optional<std::int64_t> locked_at;
  std::exception_ptr failure;

  void spawn_lock(Mutex* m) {
    locked_at.reset();
    asio::co_spawn(
        client_a->get_executor(),
        [this, m]() -> asio::awaitable<void> {
          co_await m->lock();
          locked_at = now_us();
        },
        [this](std::exception_ptr e) {
          if (e) failure = e;
        });
  }

  void check() const {
    if (failure) std::rethrow_exception(failure);
  }

  asio::awaitable<void> setup() {
    auto ex = co_await asio::this_coro::executor;
    client_a.emplace(ex, client_options(endpoints));
    client_b.emplace(ex, client_options(endpoints));
    name = unique("lock");
    a.emplace(*client_a, name);
    b.emplace(*client_b, name);
    co_await a->lock();
    holder = &*a;
    waiter = &*b;
    spawn_lock(waiter);
  }

  asio::awaitable<double> round() {
    co_await wait_count(*election::detail::access::core(*client_a), name + "/", 2, 10s);
    co_await sleep_for(200ms);  // in line, its watch current (see handover.cpp)
    check();
    const auto t0 = now_us();
    co_await holder->unlock();
    co_await require_within([this] { return locked_at.has_value() || failure; }, 10s,
                            "the next holder");
    check();
    const auto took = *locked_at - t0;
    std::swap(holder, waiter);
    spawn_lock(waiter);
    co_return ms(took);
  }

  double last_wait() const {
    const auto& p = holder->participant();
    return p.takeover_wait() ? static_cast<double>(p.takeover_wait()->count()) : -1;
  }

  asio::awaitable<void> teardown() {
    if (holder) {
      co_await holder->unlock();
      co_await require_within([this] { return locked_at.has_value() || failure; }, 10s,
                              "the last holder");
      co_await waiter->unlock();
    }
    a.reset();
    b.reset();
    client_a.reset();
    client_b.reset();
  }
};

// lock() + unlock() of a free lock on one live Client; and the floor: one Txn + one delete.
struct Uncontended {
  std::vector<std::string> endpoints;
  std::optional<std::chrono::milliseconds> delay;
  std::optional<Client> client;
  std::optional<Mutex> m;
  std::string floor_key;

  asio::awaitable<void> setup() {
    client.emplace(co_await asio::this_coro::executor, client_options(endpoints));
    co_await client->connect();
    MutexOptions options;
    options.takeover_delay = delay;
    m.emplace(*client, unique("lock-free"), options);
    floor_key = unique("lock-floor");
  }

  asio::awaitable<double> round() {
    const auto t0 = now_us();
    co_await m->lock();
    co_await m->unlock();
    co_return ms(now_us() - t0);
  }

  asio::awaitable<double> floor_round() {
    auto& core = *election::detail::access::core(*client);
    const auto t0 = now_us();
    auto request = detail::guarded_by(floor_key, 0);
    detail::put_candidate(request, floor_key, "", 0);
    co_await core.call("lock floor", core.kv().async(), &etcdserverpb::KV::Stub::async::Txn,
                       std::move(request));
    co_await bench::delete_key(core, floor_key);
    co_return ms(now_us() - t0);
  }

  asio::awaitable<void> teardown() {
    m.reset();
    client.reset();
    co_return;
  }
};

ProcessHandover::Program etcdctl_lock(const Config& config, const Etcd& etcd) {
  return {
      "etcdctl lock",
      [&config, endpoint = etcd.endpoint()](const std::string& name, const std::string&) {
        return std::vector<std::string>{config.etcdctl, "--endpoints=" + endpoint, "lock", name};
      },
      [](const std::string&) { return true; },  // its first line is its key
      SIGINT, "lock-etcdctl.err"};
}

}  // namespace

int run_lock(const Config& config) {
  const int rounds = config.quick ? 5 : 60;
  const int ctl_rounds = config.quick ? 2 : 60;
  const int free_rounds = config.quick ? 5 : 30;
  Etcd etcd(config, "lock");
  IoThread io;
  Handoff h;
  h.endpoints = etcd.endpoints();
  io.sync(h.setup(), 30s, "lock handoff setup");
  Uncontended free;
  free.endpoints = etcd.endpoints();
  io.sync(free.setup(), 30s, "uncontended setup");
  Uncontended free_off;
  free_off.endpoints = etcd.endpoints();
  free_off.delay = std::chrono::milliseconds(0);
  io.sync(free_off.setup(), 30s, "uncontended setup (delay off)");

  std::optional<Client> probe;
  io.sync(
      [&]() -> asio::awaitable<void> {
        probe.emplace(co_await asio::this_coro::executor, client_options(etcd.endpoints()));
        co_await probe->connect();
      }(),
      10s, "probe client");
  ProcessHandover ctl(config, io, *probe, etcdctl_lock(config, etcd));
  ctl.setup();

  Samples ours, waited, peer, lone, lone_off, floor;
  for (int r = -1; r < std::max({rounds, ctl_rounds, free_rounds}); ++r) {
    if (r < rounds) {
      const double o = io.sync(h.round(), 30s, "lock handoff round");
      if (r >= 0) {
        ours.add(o);
        waited.add(h.last_wait());
      }
    }
    if (r < ctl_rounds) {
      const double c = ctl.round(r + 1);
      if (r >= 0) peer.add(c);
    }
    if (r < free_rounds) {
      const double u = io.sync(free.round(), 30s, "uncontended round");
      const double z = io.sync(free_off.round(), 30s, "uncontended round (delay off)");
      const double f = io.sync(free.floor_round(), 30s, "lock floor round");
      if (r >= 0) {
        lone.add(u);
        lone_off.add(z);
        floor.add(f);
      }
    }
  }
  ctl.teardown();
  io.sync(h.teardown(), 30s, "lock handoff teardown");
  io.sync(free.teardown(), 30s, "uncontended teardown");
  io.sync(free_off.teardown(), 30s, "uncontended teardown (delay off)");
  io.sync(
      [&]() -> asio::awaitable<void> {
        probe.reset();
        co_return;
      }(),
      10s, "probe teardown");

  Results results("lock");
  const std::string ctl_name = "etcdctl lock (SIGINT)";
  const std::string floor_name = "floor: one Txn + one delete";
  char note[200];
  std::snprintf(note, sizeof note,
                "unlock() -> the waiting Mutex's lock() returns, default options; the next holder "
                "waited %.0f ms of the takeover delay (max); etcdctl rounds: %zu",
                waited.percentile(100), peer.size());
  results.add(Row{"lock handoff p50", "ms", ours.percentile(50), ctl_name, peer.percentile(50),
                  "<= 1.0x etcdctl", ours.percentile(50) <= peer.percentile(50) ? 1 : 0,
                  ours.size(), note});
  results.add(Row{"lock handoff p99", "ms", ours.percentile(99), ctl_name, peer.percentile(99), "",
                  -1, ours.size(), ""});
  results.add(Row{"uncontended lock + unlock p50", "ms", lone.percentile(50), floor_name,
                  floor.percentile(50), "", -1, lone.size(),
                  "a free lock, its Mutex made before the rounds, default options: a lease "
                  "grant, the guarded Txn, the signed unlock and the revocation (the Mutex "
                  "follows its queue, so its own unlock needs no takeover delay)"});
  results.add(Row{"uncontended lock + unlock p50, takeover delay off", "ms",
                  lone_off.percentile(50), floor_name, floor.percentile(50), "", -1,
                  lone_off.size(), "the same with MutexOptions::takeover_delay = 0"});
  results.print();
  results.write(config.out);
  return 0;
}

}  // namespace election::bench
