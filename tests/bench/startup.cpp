// Start-up: process start -> first leadership, in an election nobody else is in.
//
//   ours:    bench-candidate (dynamic loading, Client, connect, lease grant, the key's Txn,
//            the election's watch, the post-win check); the clock starts just before fork() here and stops at the time
//            the candidate prints when campaign() returns.
//   etcdctl: `etcdctl elect NAME V` (dial, session, the key's Txn, a watch, Get); the clock stops when its key
//            line arrives on the pipe.
#include "common.hpp"

#include <csignal>

namespace election::bench {

int run_startup(const Config& config) {
  const int rounds = config.quick ? 3 : 20;
  Etcd etcd(config, "startup");
  const auto err = config.work / "startup.err";
  Samples ours, peer, to_main, main_to_lead;

  auto run_ours = [&](bool count) {
    Child c({config.candidate, "--endpoints", etcd.endpoint(), "--election", unique("startup"),
             "--ttl", "10", "--max-seconds", "60"},
            err);
    auto started =
        c.wait_line([](const std::string& l) { return l.rfind("started ", 0) == 0; }, 15s);
    auto led = c.wait_line([](const std::string& l) { return l.rfind("leader ", 0) == 0; }, 15s);
    if (!started || !led)
      throw std::runtime_error("bench-candidate did not lead: " + c.stderr_tail());
    if (count) {
      ours.add(ms(std::stoll(fields(led->text).at(1)) - c.spawned_us()));
      to_main.add(ms(std::stoll(fields(started->text).at(1)) - c.spawned_us()));
      main_to_lead.add(
          ms(std::stoll(fields(led->text).at(1)) - std::stoll(fields(started->text).at(1))));
    }
    c.signal(SIGTERM);
    c.stop(5s);
  };
  auto run_ctl = [&](bool count) {
    Child c({config.etcdctl, "--endpoints=" + etcd.endpoint(), "elect", unique("startup-ctl"), "v"},
            err);
    auto led = c.next_line(15s);
    if (!led) throw std::runtime_error("etcdctl elect did not lead: " + c.stderr_tail());
    if (count) peer.add(ms(led->at_us - c.spawned_us()));
    c.signal(SIGINT);
    c.stop(5s);
  };

  // The first round of each warms the page cache and is not counted; then they alternate.
  for (int r = -1; r < rounds; ++r) {
    if (r % 2 == 0) {
      run_ours(r >= 0);
      run_ctl(r >= 0);
    } else {
      run_ctl(r >= 0);
      run_ours(r >= 0);
    }
  }

  Results results("startup");
  char note[200];
  std::snprintf(note, sizeof note,
                "fork -> leading, fresh election; of which fork -> main(): p50 %.1f ms (exec, "
                "dynamic loading), main() -> leading: p50 %.1f ms",
                to_main.percentile(50), main_to_lead.percentile(50));
  results.add(Row{"start-up to leadership p50", "ms", ours.percentile(50), "etcdctl elect",
                  peer.percentile(50), "", -1, ours.size(), note});
  results.add(Row{"start-up to leadership p99", "ms", ours.percentile(99), "etcdctl elect",
                  peer.percentile(99), "", -1, ours.size(), ""});
  results.print();
  results.write(config.out);
  return 0;
}

}  // namespace election::bench
