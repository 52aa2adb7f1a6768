// Scale: N participants campaigning in one process on one Client: one leads, N wait in line.
//
//   memory:  VmRSS after - before, / N ("before": the Client connected and one warm-up
//            participant leading, so the channel and first-use allocations are not counted);
//            also the allocator's bytes in use (mallinfo2) / N.
//   threads: Threads after - before.
//   CPU:     utime + stime of this process (see proc_cpu_seconds) over an idle window in which all
//            N keep their leases alive (default TTL 10 s: a renewal each every 3.3 s; the quick
//            run uses 3 s), starting once each has renewed once (and so opened its keep-alive
//            stream).
//   queued:  from starting the N campaigns until etcd holds all N + 1 keys.
// Beside it, K `etcdctl elect` processes wait in the same election: their VmRSS and threads
// are the cost of one Go participant, and their CPU over the same window, times N, what N of
// them would cost.
#include "api/access.hpp"
#include "common.hpp"

#include <csignal>

namespace election::bench {
namespace {

struct Scale {
  int n = 0;
  std::chrono::seconds ttl{10};  // ParticipantOptions' default
  std::vector<std::string> endpoints;
  std::optional<Client> client;
  std::optional<Participant> first;
  std::vector<std::unique_ptr<Participant>> waiting;
  std::string name;
  std::exception_ptr failure;
  int gave_up = 0;

  asio::awaitable<void> setup() {
    client.emplace(co_await asio::this_coro::executor, client_options(endpoints));
    name = unique("scale");
    ParticipantOptions options;
    options.ttl = ttl;
    first.emplace(*client, name, "leader", options);
    co_await first->campaign();
  }

  // Starts N campaigns and returns once etcd holds every key.
  asio::awaitable<double> queue_all() {
    auto ex = co_await asio::this_coro::executor;
    const auto t0 = now_us();
    for (int i = 0; i < n; ++i) {
      ParticipantOptions options;
      options.ttl = ttl;
      std::string value = "p";  // not "p" + std::string: g++ 12 -Wrestrict false positive
      value += std::to_string(i);
      waiting.push_back(std::make_unique<Participant>(*client, name, value, options));
      Participant* p = waiting.back().get();
      auto campaign = [p]() -> asio::awaitable<void> { co_await p->campaign(); };
      auto done = [this](std::exception_ptr e) {
        // Destroying the participants at the end aborts their campaigns: not a failure.
        if (e) ++gave_up;
        if (e && !failure && waiting.size() == static_cast<std::size_t>(n)) failure = e;
      };
      asio::co_spawn(ex, campaign, done);
    }
    co_await wait_count(*election::detail::access::core(*client), name + "/", n + 1,
                        std::chrono::seconds(120), 10ms);
    co_return ms(now_us() - t0);
  }

  asio::awaitable<bool> still_queued() {
    const auto count = co_await count_prefix(*election::detail::access::core(*client), name + "/");
    co_return count >= n + 1 && first->is_leader() && !failure;
  }

  asio::awaitable<void> teardown() {
    failure = nullptr;
    waiting.clear();  // each revokes its lease in the background
    co_await sleep_for(500ms);
    co_await first->resign();
    first.reset();
    co_await sleep_for(200ms);
    client.reset();
  }
};

}  // namespace

int run_scale(const Config& config) {
  const int n = config.n > 0 ? config.n : config.quick ? 100 : 1000;
  const int ctl_count = config.quick ? 2 : 4;
  const auto idle = config.idle_seconds > 0 ? std::chrono::seconds(config.idle_seconds)
                    : config.quick          ? 3s
                                            : 30s;
  Etcd etcd(config, "scale");
  IoThread io;
  Scale s;
  s.n = n;
  // The quick run renews more often, so that its idle window starts sooner.
  s.ttl = config.quick ? 3s : 10s;
  s.endpoints = etcd.endpoints();
  io.sync(s.setup(), 30s, "scale setup");
  std::this_thread::sleep_for(500ms);  // let gRPC's thread pool settle

  const auto before = proc_status();
  const auto heap_before = heap_in_use();
  const double queued_ms = io.sync(s.queue_all(), 150s, "queueing every participant");
  const auto queued = proc_status();
  const auto heap_queued = heap_in_use();

  // The Go client beside it, in the same election (behind ours in line).
  std::vector<std::unique_ptr<Child>> ctl;
  for (int i = 0; i < ctl_count; ++i) {
    ctl.push_back(std::make_unique<Child>(
        std::vector<std::string>{config.etcdctl, "--endpoints=" + etcd.endpoint(), "elect", s.name,
                                 "ctl-" + std::to_string(i)},
        config.work / "scale-etcdctl.err"));
  }
  io.sync(wait_count(*election::detail::access::core(*s.client), s.name + "/", n + 1 + ctl_count,
                     20s, 10ms),
          30s, "etcdctl in line");
  // A lease opens its keep-alive stream at its first renewal, a third of the TTL after the
  // grant: the idle window starts once every participant is past that, in its steady state.
  std::this_thread::sleep_for(s.ttl / 3 + 1s);

  const auto wall0 = now_us();
  const double cpu0 = proc_cpu_seconds();
  const double etcd0 = proc_cpu_seconds(etcd.pid());
  std::vector<double> ctl0;
  for (auto& c : ctl) ctl0.push_back(proc_cpu_seconds(c->pid()));
  std::this_thread::sleep_for(idle);
  const double cpu1 = proc_cpu_seconds();
  const double etcd1 = proc_cpu_seconds(etcd.pid());
  const double wall = static_cast<double>(now_us() - wall0) / 1e6;
  Samples ctl_cpu, ctl_rss, ctl_threads;
  for (std::size_t i = 0; i < ctl.size(); ++i) {
    ctl_cpu.add(proc_cpu_seconds(ctl[i]->pid()) - ctl0[i]);
    const auto st = proc_status(ctl[i]->pid());
    ctl_rss.add(static_cast<double>(st.rss_kib));
    ctl_threads.add(static_cast<double>(st.threads));
  }
  const auto after = proc_status();
  const auto heap_after = heap_in_use();
  const bool intact = io.sync(s.still_queued(), 10s, "checking the line");

  for (auto& c : ctl) c->signal(SIGINT);
  for (auto& c : ctl) c->stop(5s);
  io.sync(s.teardown(), 60s, "scale teardown");
  if (!intact) throw std::runtime_error("a participant left the line during the idle window");

  const double rss_per =
      static_cast<double>(std::max(queued.rss_kib, after.rss_kib) - before.rss_kib) / n;
  const auto heap_per = [&](std::size_t heap) {
    return (static_cast<double>(heap) - static_cast<double>(heap_before)) / 1024.0 / n;
  };
  const double threads_added = static_cast<double>(after.threads - before.threads);
  const double cpu_pct = (cpu1 - cpu0) / wall * 100.0;
  const double ctl_cpu_pct_each = ctl_cpu.percentile(50) / wall * 100.0;
  const std::string ns = std::to_string(n);

  Results results("scale");
  char note[240];
  std::snprintf(note, sizeof note,
                "VmRSS %ld KiB before, %ld queued, %ld after the idle window; allocator bytes in "
                "use per participant: %.1f KiB queued, %.1f KiB after the idle window",
                before.rss_kib, queued.rss_kib, after.rss_kib, heap_per(heap_queued),
                heap_per(heap_after));
  results.add(Row{"memory per participant (RSS)", "KiB", rss_per, "one etcdctl elect process",
                  ctl_rss.percentile(50), "< 64 KiB", rss_per < 64 ? 1 : 0,
                  static_cast<std::size_t>(n), note});
  std::snprintf(note, sizeof note,
                "%ld threads before, %ld after; etcdctl elect: %.0f threads each", before.threads,
                after.threads, ctl_threads.percentile(50));
  results.add(Row{"threads added by " + ns + " participants", "threads", threads_added,
                  "etcdctl elect x " + ns, ctl_threads.percentile(50) * n, "none per participant",
                  threads_added < n / 100.0 ? 1 : 0, static_cast<std::size_t>(n), note});
  std::snprintf(note, sizeof note,
                "%.0f s idle, TTL %lld s (etcdctl: 60 s); etcd itself used %.2f %% of a core; "
                "etcdctl: %.4f %% each (median of %d)",
                wall, static_cast<long long>(s.ttl.count()), (etcd1 - etcd0) / wall * 100.0,
                ctl_cpu_pct_each, ctl_count);
  results.add(Row{"idle CPU, " + ns + " participants", "%", cpu_pct, "etcdctl elect x " + ns,
                  ctl_cpu_pct_each * n, "< 2 % of a core", cpu_pct < 2 ? 1 : 0,
                  static_cast<std::size_t>(n), note});
  results.add(Row{"time until " + ns + " are queued", "ms", queued_ms, "", nan, "", -1,
                  static_cast<std::size_t>(n),
                  "lease grant + keep-alive stream + the key's Txn each, all started at once"});
  results.print();
  results.write(config.out);
  return 0;
}

}  // namespace election::bench
