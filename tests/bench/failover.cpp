// Crash failover: SIGKILL the leader's process -> the waiting successor leads.
//
// A crashed leader's key goes when etcd expires its lease: at TTL after its last renewal, plus
// up to 500 ms (etcd looks for expired leases twice a second), plus a raft commit. To measure
// the worst case the same way for both clients, this program renews the leader's lease itself
// (one LeaseKeepAlive, any client may send it) and SIGKILLs the leader right after; "past TTL"
// is then (successor leads) - (that renewal was sent) - TTL.
//
//   ours:    two bench-candidate processes; the successor prints the time campaign() returned.
//   etcdctl: `etcdctl lock --ttl T` processes. `etcdctl elect` has no TTL option in etcd 3.4
//            (its session TTL is fixed at 60 s); `lock` uses the same Go concurrency session and
//            the same wait for the predecessor's key to go, and prints its key when it holds the
//            lock. Its time is when that line arrives on the pipe.
// Ours and etcdctl's run side by side in two elections on one etcd, killed within a
// millisecond of each other, so both wait for the same pass of etcd's expiry loop: the
// difference between them is the clients', not etcd's 500 ms granularity.
#include "api/access.hpp"
#include "common.hpp"

#include <csignal>

namespace election::bench {
namespace {

std::int64_t lease_from_key(const std::string& key) {
  const auto slash = key.rfind('/');
  if (slash == std::string::npos) throw std::runtime_error("no lease in key " + key);
  return static_cast<std::int64_t>(std::stoull(key.substr(slash + 1), nullptr, 16));
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

int run_failover(const Config& config) {
  struct Plan {
    int ttl;
    int samples;
  };
  const std::vector<Plan> plans =
      config.quick ? std::vector<Plan>{{2, 1}} : std::vector<Plan>{{2, 10}, {5, 6}};
  Etcd etcd(config, "failover");
  IoThread io;
  std::optional<Client> probe;
  io.sync(
      [&]() -> asio::awaitable<void> {
        probe.emplace(co_await asio::this_coro::executor, client_options(etcd.endpoints()));
        co_await probe->connect();
      }(),
      10s, "probe client");
  const auto err = config.work / "failover.err";
  auto candidate = [&](const std::string& name, const char* value, int ttl) {
    return std::make_unique<Child>(
        std::vector<std::string>{config.candidate, "--endpoints", etcd.endpoint(), "--election",
                                 name, "--value", value, "--ttl", std::to_string(ttl),
                                 "--max-seconds", "120"},
        err);
  };
  auto locker = [&](const std::string& name, int ttl) {
    return std::make_unique<Child>(
        std::vector<std::string>{config.etcdctl, "--endpoints=" + etcd.endpoint(), "lock",
                                 "--ttl=" + std::to_string(ttl), name},
        err);
  };
  auto is_leader_line = [](const std::string& l) { return starts_with(l, "leader "); };

  Results results("failover");
  for (const auto& plan : plans) {
    Samples ours_past, ctl_past, ours_total, ctl_total;
    const std::int64_t ttl_us = plan.ttl * 1'000'000LL;
    for (int s = 0; s < plan.samples; ++s) {
      const auto ours_name = unique("failover");
      const auto ctl_name = unique("failover-ctl");
      auto a = candidate(ours_name, "a", plan.ttl);
      auto a_line = a->wait_line(is_leader_line, 15s);
      if (!a_line) throw std::runtime_error("candidate a did not lead: " + a->stderr_tail());
      const auto ours_lease =
          static_cast<std::int64_t>(std::stoull(fields(a_line->text).at(2), nullptr, 16));
      auto ca = locker(ctl_name, plan.ttl);
      auto ca_line = ca->next_line(15s);
      if (!ca_line) throw std::runtime_error("etcdctl lock did not lock: " + ca->stderr_tail());
      const auto ctl_lease = lease_from_key(ca_line->text);

      auto b = candidate(ours_name, "b", plan.ttl);
      auto cb = locker(ctl_name, plan.ttl);
      io.sync(wait_count(*election::detail::access::core(*probe), ours_name + "/", 2, 15s), 20s,
              "candidate b in line");
      io.sync(wait_count(*election::detail::access::core(*probe), ctl_name + "/", 2, 15s), 20s,
              "etcdctl b in line");
      std::this_thread::sleep_for(50ms);

      // Renew, kill; the order alternates so neither is always first in etcd's expiry queue.
      std::int64_t ours_renewed = 0, ctl_renewed = 0, ours_killed = 0, ctl_killed = 0;
      auto crash_ours = [&] {
        ours_renewed =
            io.sync(renew_lease(*election::detail::access::core(*probe), ours_lease), 5s, "renew");
        a->signal(SIGKILL);
        ours_killed = now_us();
      };
      auto crash_ctl = [&] {
        ctl_renewed =
            io.sync(renew_lease(*election::detail::access::core(*probe), ctl_lease), 5s, "renew");
        ca->signal(SIGKILL);
        ctl_killed = now_us();
      };
      if (s % 2 == 0) {
        crash_ours();
        crash_ctl();
      } else {
        crash_ctl();
        crash_ours();
      }

      std::optional<Line> b_line, cb_line;
      auto both = [&] {
        while (!b_line) {
          auto l = b->take_line();
          if (!l) break;
          if (is_leader_line(l->text)) b_line = l;
        }
        if (!cb_line) cb_line = cb->take_line();
        return b_line && cb_line;
      };
      if (!Child::pump({b.get(), cb.get()}, both, std::chrono::seconds(plan.ttl + 10)))
        throw std::runtime_error(std::string("successor did not lead: ") +
                                 (b_line ? "" : "ours: " + b->stderr_tail()) +
                                 (cb_line ? "" : " etcdctl: " + cb->stderr_tail()));
      const auto ours_led = std::stoll(fields(b_line->text).at(1));
      ours_past.add(ms(ours_led - ours_renewed - ttl_us));
      ctl_past.add(ms(cb_line->at_us - ctl_renewed - ttl_us));
      ours_total.add(ms(ours_led - ours_killed));
      ctl_total.add(ms(cb_line->at_us - ctl_killed));

      b->signal(SIGTERM);
      cb->signal(SIGINT);
      a->stop(2s);
      ca->stop(2s);
      b->stop(5s);
      cb->stop(5s);
    }
    const std::string ttl_text = "TTL " + std::to_string(plan.ttl) + " s";
    const std::string peer = "etcdctl lock --ttl=" + std::to_string(plan.ttl);
    char note[200];
    std::snprintf(note, sizeof note,
                  "SIGKILL -> successor leads: p50 %.0f ms ours, %.0f ms etcdctl (the leader's "
                  "lease renewed just before the kill: the worst case)",
                  ours_total.percentile(50), ctl_total.percentile(50));
    results.add(Row{"crash failover past TTL p50 (" + ttl_text + ")", "ms",
                    ours_past.percentile(50), peer, ctl_past.percentile(50), "", -1,
                    ours_past.size(), note});
    results.add(Row{"crash failover past TTL max (" + ttl_text + ")", "ms", ours_past.max(), peer,
                    ctl_past.max(), "<= 700 ms", ours_past.max() <= 700 ? 1 : 0, ours_past.size(),
                    ""});
  }
  io.sync(
      [&]() -> asio::awaitable<void> {
        probe.reset();
        co_return;
      }(),
      10s, "probe teardown");
  results.print();
  results.write(config.out);
  return 0;
}

}  // namespace election::bench
