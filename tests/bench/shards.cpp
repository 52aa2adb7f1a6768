// Shards: N participants in N elections of one process (one election per shard, the way
// services spread work), each leading its own, on one Session lease or with a lease each.
//
// For each size (quick: 100; full: 100, 1,000 and 10,000) and each way of holding leases, a
// child process of its own (`election-bench shards-one`, so that memory freed by one run is not
// reused by the next) starts a private etcd, connects one Client and one warm-up participant,
// then measures:
//   memory:  VmRSS after all lead - before, / N (also the allocator's bytes in use / N);
//   queued:  from starting the N campaigns until etcd holds all N keys (each has won: its
//            election has no one else);
//   CPU:     utime + stime of the process over an idle window in which every lease is kept
//            alive (TTL 10 s: a renewal every 3.3 s; a Session renews one lease for all N),
//            starting once every lease has renewed once.
// The parent prints the Session figures beside the lease-each ones of the same size (the
// baseline) and the growth from 100 to 10,000.
#include "common.hpp"

#include "api/access.hpp"

#include <malloc.h>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>

namespace election::bench {
namespace {

struct Measured {
  double rss_kib = nan;    // per participant
  double heap_kib = nan;   // per participant
  double cpu_pct = nan;    // of one core, over the idle window
  double queued_ms = nan;  // until etcd holds every key
  double lead_ms = nan;    // until every campaign has returned
  double etcd_cpu_pct = nan;
  double idle_s = nan;
  double trimmed_kib = nan;  // per participant, after malloc_trim(0)
};

struct Shards {
  int n = 0;
  bool session_mode = false;
  std::chrono::seconds ttl{10};
  std::vector<std::string> endpoints;
  std::optional<Client> client;
  std::optional<Client> probe;  // counts keys: its requests do not queue behind the campaigns
  std::optional<Session> session;
  std::optional<Participant> warm;
  std::vector<std::unique_ptr<Participant>> shards;
  std::string base;
  int failed = 0;
  int won = 0;
  std::string failure;
  double queued_ms = nan;  // until etcd held every key (each shard in line)

  asio::awaitable<void> setup() {
    client.emplace(co_await asio::this_coro::executor, client_options(endpoints));
    probe.emplace(co_await asio::this_coro::executor, client_options(endpoints));
    co_await probe->connect();
    base = unique("shards");
    ParticipantOptions options;
    options.ttl = ttl;
    if (session_mode) {
      session.emplace(*client, SessionOptions{ttl, {}});
      co_await session->start();
      warm.emplace(*session, base + "-warm", "w", options);
    } else {
      warm.emplace(*client, base + "-warm", "w", options);
    }
    co_await warm->campaign();
  }

  asio::awaitable<double> queue_all() {
    auto ex = co_await asio::this_coro::executor;
    const auto t0 = now_us();
    ParticipantOptions options;
    options.ttl = ttl;
    shards.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      const auto name = base + "/" + std::to_string(i);
      if (session_mode)
        shards.push_back(std::make_unique<Participant>(*session, name, "v", options));
      else
        shards.push_back(std::make_unique<Participant>(*client, name, "v", options));
      Participant* p = shards.back().get();
      auto campaign = [this, p]() -> asio::awaitable<void> {
        co_await p->campaign();
        ++won;
      };
      asio::co_spawn(ex, campaign, [this](std::exception_ptr e) {
        if (!e) return;
        ++failed;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          if (failure.empty()) failure = x.what();
        }
      });
    }
    // Until etcd holds every key, or a campaign fails (which would never let the count come).
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(300);
    for (;;) {
      if (failed)
        throw std::runtime_error(std::to_string(failed) +
                                 " campaigns failed, the first: " + failure);
      const auto count = co_await count_prefix(*election::detail::access::core(*probe), base + "/");
      if (count >= n && std::isnan(queued_ms)) queued_ms = ms(now_us() - t0);
      if (won == n) break;
      if (std::chrono::steady_clock::now() > give_up)
        throw std::runtime_error("only " + std::to_string(count) + " of " + std::to_string(n) +
                                 " shards in line and " + std::to_string(won) +
                                 " leading after 300 s");
      co_await sleep_for(5ms);
    }
    co_return ms(now_us() - t0);
  }

  bool all_lead() const {
    for (const auto& p : shards)
      if (!p->is_leader()) return false;
    return warm->is_leader();
  }
};

}  // namespace

// One measurement, in this process: prints one `measured` line for the parent.
int run_shards_one(const Config& config, bool session_mode) {
  const int n = config.n > 0 ? config.n : 100;
  const auto idle = std::chrono::seconds(config.idle_seconds > 0 ? config.idle_seconds : 20);
  Etcd etcd(config, session_mode ? "shards-session" : "shards-each");
  IoThread io;
  Shards s;
  s.n = n;
  s.session_mode = session_mode;
  s.endpoints = etcd.endpoints();
  // Names nest as base/i under no election of their own: shards are "base/0", "base/1", ...
  // and the warm-up one "base-warm".
  io.sync(s.setup(), 30s, "shards setup");
  std::this_thread::sleep_for(500ms);  // let gRPC's thread pool settle

  const auto before = proc_status();
  const auto heap_before = heap_in_use();
  Measured m;
  m.lead_ms = io.sync(s.queue_all(), 320s, "queueing every shard");
  m.queued_ms = s.queued_ms;
  if (s.failed)
    throw std::runtime_error(std::to_string(s.failed) + " campaigns failed: " + s.failure);
  // Every lease past its first renewal (a third of the TTL after its grant): the steady state.
  std::this_thread::sleep_for(s.ttl / 3 + 1s);
  const auto wall0 = now_us();
  const double cpu0 = proc_cpu_seconds();
  const double etcd0 = proc_cpu_seconds(etcd.pid());
  std::this_thread::sleep_for(idle);
  const double cpu1 = proc_cpu_seconds();
  const double etcd1 = proc_cpu_seconds(etcd.pid());
  m.idle_s = static_cast<double>(now_us() - wall0) / 1e6;
  const auto after = proc_status();
  const auto heap_after = heap_in_use();
  // Every key still there, every shard still leading; or how many stopped, and why.
  const auto lost = io.sync(
      [&]() -> asio::awaitable<std::string> {
        const auto count =
            co_await count_prefix(*election::detail::access::core(*s.client), s.base + "/");
        std::map<std::string, int> reasons;
        for (auto& p : s.shards)
          if (!p->is_leader()) {
            const auto reason = co_await p->keep_alive();
            ++reasons[reason.message()];
          }
        if (!s.warm->is_leader()) ++reasons["(the warm-up participant)"];
        std::string why;
        for (const auto& [reason, times] : reasons)
          why += " " + std::to_string(times) + " x '" + reason + "'";
        if (count != n) why += " " + std::to_string(n - count) + " keys gone";
        co_return why;
      }(),
      30s, "checking every shard leads");
  if (!lost.empty())
    throw std::runtime_error("shards stopped leading during the idle window:" + lost);
  m.rss_kib = static_cast<double>(after.rss_kib - before.rss_kib) / n;
  m.heap_kib = (static_cast<double>(heap_after) - static_cast<double>(heap_before)) / 1024.0 / n;
  m.cpu_pct = (cpu1 - cpu0) / m.idle_s * 100.0;
  m.etcd_cpu_pct = (etcd1 - etcd0) / m.idle_s * 100.0;
  // What of the resident growth is memory in use, and what the allocator keeps from the burst
  // of N campaigns at once (gRPC's call objects, freed since): RSS again after handing the
  // free pages back.
  ::malloc_trim(0);
  m.trimmed_kib = static_cast<double>(proc_status().rss_kib - before.rss_kib) / n;
  std::printf("measured %d %s %.3f %.3f %.4f %.1f %.3f %.1f %.3f %.1f\n", n,
              session_mode ? "session" : "each", m.rss_kib, m.heap_kib, m.cpu_pct, m.queued_ms,
              m.etcd_cpu_pct, m.idle_s, m.trimmed_kib, m.lead_ms);
  std::fflush(stdout);
  // Nothing to hand over: etcd goes with this process (the fixture's leash), so the 2N
  // withdrawals a tidy teardown would send are skipped.
  std::_Exit(0);
}

int run_shards(const Config& config, const std::string& self) {
  std::vector<int> sizes =
      config.quick ? std::vector<int>{100} : std::vector<int>{100, 1000, 10000};
  if (config.n > 0) sizes = {config.n};
  const int idle = config.idle_seconds > 0 ? config.idle_seconds : config.quick ? 5 : 20;
  std::map<std::pair<int, std::string>, Measured> got;
  for (int n : sizes) {
    for (const std::string mode : {"each", "session"}) {
      Child child({self, "shards-one", "--n", std::to_string(n), "--lease", mode, "--idle",
                   std::to_string(idle), "--out", config.out.string()},
                  config.work / ("shards-" + mode + "-" + std::to_string(n) + ".err"));
      auto line =
          child.wait_line([](const std::string& l) { return l.rfind("measured ", 0) == 0; }, 600s);
      const int status = child.stop(10s);
      if (!line)
        throw std::runtime_error("shards-one --n " + std::to_string(n) + " --lease " + mode +
                                 " gave no result (exit " + std::to_string(status) +
                                 "): " + child.stderr_tail());
      std::istringstream in(line->text.substr(9));
      Measured m;
      int size = 0;
      std::string kind;
      in >> size >> kind >> m.rss_kib >> m.heap_kib >> m.cpu_pct >> m.queued_ms >> m.etcd_cpu_pct >>
          m.idle_s >> m.trimmed_kib >> m.lead_ms;
      got[{n, mode}] = m;
      std::cerr << "shards: " << n << " " << mode << ": " << m.rss_kib << " KiB, " << m.cpu_pct
                << " % CPU, queued in " << m.queued_ms << " ms" << std::endl;
    }
  }

  Results results("shards");
  char note[240];
  for (int n : sizes) {
    const auto& e = got[{n, "each"}];
    const auto& s = got[{n, "session"}];
    const auto ns = std::to_string(n);
    const bool big = n == 10000;
    std::snprintf(note, sizeof note,
                  "allocator bytes in use per shard: %.1f KiB on a Session (RSS after "
                  "malloc_trim: %.1f KiB), %.1f KiB with a lease each (%.1f KiB)",
                  s.heap_kib, s.trimmed_kib, e.heap_kib, e.trimmed_kib);
    results.add(Row{"memory per shard (RSS), " + ns + " on a Session", "KiB", s.rss_kib,
                    "a lease each", e.rss_kib, big ? "< 8 KiB" : "",
                    big ? (s.rss_kib < 8 ? 1 : 0) : -1, static_cast<std::size_t>(n), note});
    std::snprintf(note, sizeof note,
                  "%.0f s idle, TTL 10 s; etcd itself used %.2f %% of a core (Session) and "
                  "%.2f %% (a lease each)",
                  s.idle_s, s.etcd_cpu_pct, e.etcd_cpu_pct);
    results.add(Row{"idle CPU, " + ns + " shards on a Session", "%", s.cpu_pct, "a lease each",
                    e.cpu_pct, big ? "< 0.2 % of a core" : "", big ? (s.cpu_pct < 0.2 ? 1 : 0) : -1,
                    static_cast<std::size_t>(n), note});
    if (n == 1000)
      results.add(Row{"idle CPU, 1000 shards with a lease each", "%", e.cpu_pct, "", nan,
                      "< 1 % of a core", e.cpu_pct < 1 ? 1 : 0, 1000, note});
    results.add(Row{"time until " + ns + " shards are in line, on a Session", "ms", s.queued_ms,
                    "a lease each", e.queued_ms, big ? "< 2 s" : "",
                    big ? (s.queued_ms < 2000 ? 1 : 0) : -1, static_cast<std::size_t>(n),
                    "all N campaigns started at once, until etcd holds every key"});
    const bool lead_met = s.lead_ms < 2000 && s.lead_ms < 0.5 * e.lead_ms;
    results.add(Row{"time until " + ns + " shards lead, on a Session", "ms", s.lead_ms,
                    "a lease each", e.lead_ms, big ? "< 2 s and < 0.5x a lease each" : "",
                    big ? (lead_met ? 1 : 0) : -1, static_cast<std::size_t>(n),
                    "one election each, started at once: each wins once its election's view "
                    "shows it first, + the 200 ms takeover delay this etcd gets for an election "
                    "whose history this Client has not seen"});
  }
  results.print();
  results.write(config.out);
  return 0;
}

}  // namespace election::bench
