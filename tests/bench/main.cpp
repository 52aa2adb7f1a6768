// election-bench: the benchmarks of issue #6, one scenario per run, each on a private etcd.
//
//   election-bench handover|lock|failover|fanout|scale|shards|startup [--quick] [--out DIR]
//                  [--candidate PATH] [--worker PATH] [--etcdctl PATH] [--n N]
//                  [--idle SECONDS] [--lease each|session]
//   election-bench report [--out DIR] [--mode quick|full] [--command TEXT]
//
// A scenario prints its table and writes DIR/<scenario>.tsv; `report` joins them into
// DIR/bench-results.md and DIR/bench-results.json. tests/bench/run.sh runs them all.
// --quick: few rounds and 100 instead of 1,000 observers/participants, for the smoke test.
// --n, --idle: other sizes for fanout and scale, and another idle window for scale (profiling).
// Exit status: 0 when the scenario ran (targets missed or not), 1 on an error, 2 on bad usage.
#include "common.hpp"

#include <csignal>
#include <cstdlib>
#include <iostream>

#ifndef ELECTION_BENCH_WORK_DIR
#define ELECTION_BENCH_WORK_DIR "bench-work"
#endif
#ifndef ELECTION_BENCH_WORKER
#define ELECTION_BENCH_WORKER "leader-worker"
#endif
#ifndef ELECTION_BENCH_CANDIDATE
#define ELECTION_BENCH_CANDIDATE "bench-candidate"
#endif

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "election-bench: " << why << "\n"
            << "usage: election-bench handover|lock|failover|fanout|scale|shards|startup [--quick]"
               " [--out DIR]"
               " [--candidate PATH] [--worker PATH] [--etcdctl PATH] [--n N] [--idle SECONDS]"
               " [--lease each|session]\n"
               "       election-bench report [--out DIR] [--mode quick|full] [--command TEXT]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace election::bench;
  if (argc < 2) usage("no scenario");
  const std::string scenario = argv[1];
  Config config;
  config.out = "bench-results";
  config.work = ELECTION_BENCH_WORK_DIR;
  config.candidate = ELECTION_BENCH_CANDIDATE;
  config.worker = ELECTION_BENCH_WORKER;
  std::string mode = "full", command, lease = "each";
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value for " + flag);
      return argv[++i];
    };
    if (flag == "--quick") {
      config.quick = true;
    } else if (flag == "--out") {
      config.out = value();
    } else if (flag == "--candidate") {
      config.candidate = value();
    } else if (flag == "--worker") {
      config.worker = value();
    } else if (flag == "--etcdctl") {
      config.etcdctl = value();
    } else if (flag == "--n") {
      config.n = std::stoi(value());
    } else if (flag == "--idle") {
      config.idle_seconds = std::stoi(value());
    } else if (flag == "--lease") {
      lease = value();
      if (lease != "each" && lease != "session") usage("--lease is each or session");
    } else if (flag == "--mode") {
      mode = value();
    } else if (flag == "--command") {
      command = value();
    } else {
      usage("unknown flag " + flag);
    }
  }
  // Before any thread exists: every etcdctl we start speaks the v3 API.
  ::setenv("ETCDCTL_API", "3", 1);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    std::filesystem::create_directories(config.out);
    if (scenario == "handover") return run_handover(config);
    if (scenario == "lock") return run_lock(config);
    if (scenario == "failover") return run_failover(config);
    if (scenario == "fanout") return run_fanout(config);
    if (scenario == "scale") return run_scale(config);
    if (scenario == "startup") return run_startup(config);
    if (scenario == "shards")
      return run_shards(config, std::filesystem::read_symlink("/proc/self/exe").string());
    if (scenario == "shards-one") return run_shards_one(config, lease == "session");
    if (scenario == "report") return run_report(config.out, command, mode);
  } catch (const std::exception& e) {
    std::cerr << "election-bench " << scenario << ": " << e.what() << std::endl;
    return 1;
  }
  usage("unknown scenario '" + scenario + "'");
}
