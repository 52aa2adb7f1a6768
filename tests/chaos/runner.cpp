// chaos-runner: a 3-member etcd cluster on loopback, N leader-worker --json processes, each
// behind its own TCP proxies, and faults injected in a seeded random order for --duration
// seconds; then every worker is stopped, etcd's history is read, and the checker decides.
//
//   chaos-runner --worker PATH --fixture cmake/etcd-fixture.sh --out DIR [--duration S]
//                [--seed N] [--workers N] [--ttl S] [--takeover-delay MS] [--gaps-advisory]
//                [--faults KIND,KIND...] [--slow-link-ms MS] [--lock N]
//                [--stop-latency MS | MIN-MAX]
//
// --lock N runs the deck in lock mode: the workers take the lock `chaos` (leader-worker --lock:
// election::Mutex's keys, one queue with etcdctl lock), make N fenced writes, release it and
// take it again, so the lock changes hands every N seconds besides the faults. The checker's
// rules are the same: one holder at a time, one holder's work at a time unless an overrun
// report covers it, every accepted write fenced by the first key in line, gaps within TTL +
// slack (a release hands over at once), no key left.
//
// --stop-latency: every worker process is started with leader-worker --stop-latency L, L drawn
// from MIN-MAX ms (default 0-300; a single MS: always MS; 0: off) by the run's seed and the
// process's name (slot and incarnation) alone, so a replayed run (same seed) gives each process
// the same L whatever the faults did, and the deck's draws are those of a run without it. Once
// its leadership ends, a worker's work runs on for L ms before it stops, and the checker fails
// on two works at once that no overrun report covers (checker.hpp). The values are in the log,
// in DIR/stop-latency.tsv and in each `work-cancelled` event.
//
// --faults narrows the deck to some kinds (to chase one failure); by default it holds all eight:
// kill-leader, pause-leader, cut-worker, slow-link, freeze-member, kill-member, restart-cluster,
// freeze-watch.
// slow-link puts one worker (half the time the leader) at the end of a slow link for 10-20 s:
// every byte between it and every etcd member is held back --slow-link-ms (default 300) each
// way by its proxies, as with an etcd in another region; a leader so slowed should keep leading.
// freeze-watch SIGSTOPs the member the next candidate in line watches the election on (from its
// `stream` events; never the raft leader: etcdctl move-leader first), SIGKILLs the leader worker
// 200 ms later (a new worker takes its slot), and thaws the member TTL + 3 s after the kill: the
// candidate must learn of its win from a watch that moved off the frozen member. The summary
// gives the time from each such kill to the next `elected`.
//
// Exit 0 when the checker passes, 1 when it fails, 2 on bad usage or a broken set-up.
// Everything it starts is stopped by pid (pid files in DIR), also when it fails or is
// interrupted; workers also die with it (PR_SET_PDEATHSIG).
#include "checker.hpp"
#include "children.hpp"
#include "proxy.hpp"
#include "report.hpp"

#include "election/lease.hpp"
#include "etcd/rpc.grpc.pb.h"

#include <grpcpp/grpcpp.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using chaos::Children;
using chaos::close_inherited_descriptors;

constexpr int members = 3;
const std::string election_name = "chaos";
// leader-worker writes its counter through the fenced write at `<election>-counter`.
const std::string counter_key = election_name + "-counter";

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_text(const fs::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::trunc);
  out << text;
}

// A lease id as leader-worker prints it (and as candidate keys end).
std::string trim(std::string s) {
  s.erase(0, s.find_first_not_of(" \t\r\n"));
  s.erase(s.find_last_not_of(" \t\r\n") + 1);
  return s;
}

struct Options {
  int duration_s = 150;
  std::uint64_t seed = 0;
  int workers = 5;
  int ttl_s = 3;
  // Passed to every worker when set (>= 0); unset (-1), the workers choose from etcd's version,
  // as a deployment would: 200 ms on Debian 12's 3.4.23, which lacks the fix for stale-leader
  // lease revocation (etcd #15247). See ParticipantOptions::takeover_delay. 0 runs without it,
  // to show the hazard.
  int takeover_delay_ms = -1;
  fs::path out;
  std::string worker;
  std::string fixture;
  // Gaps over TTL + 2 s are reported but do not fail the run (the safety rules always do).
  bool gaps_advisory = false;
  std::vector<std::string> faults;  // the deck's kinds; empty: every kind
  int slow_link_ms = 300;           // slow-link: the delay each way
  int lock_writes = 0;              // --lock N: lock mode, N writes a hold; 0: an election
  // --stop-latency MIN-MAX: each worker's work takes a seeded time in this range to stop once
  // cancelled (leader-worker --stop-latency); max 0: off.
  int stop_latency_min_ms = 0;
  int stop_latency_max_ms = 300;
};

std::vector<std::string> all_fault_kinds() {
  return {"kill-leader",   "pause-leader", "cut-worker",      "slow-link",
          "freeze-member", "kill-member",  "restart-cluster", "freeze-watch"};
}

// --- child processes: see children.hpp ----------------------------------------------------

// Runs a command to its end; blocking, for the clean-up when the event loop is gone.
int run_blocking(std::vector<std::string> argv) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    close_inherited_descriptors();
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string find_program(const std::string& name) {
  std::istringstream path(std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");
  for (std::string dir; std::getline(path, dir, ':');) {
    const auto candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  throw std::runtime_error(name + " not found in PATH");
}

// --- etcd, read directly after the run --------------------------------------------------------

std::string range_end_of(std::string prefix) {
  prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

std::vector<std::string> keys_under(const std::string& endpoint, const std::string& prefix) {
  auto stub =
      etcdserverpb::KV::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 5s);
  etcdserverpb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(range_end_of(prefix));
  request.set_keys_only(true);
  etcdserverpb::RangeResponse response;
  const auto status = stub->Range(&context, request, &response);
  if (!status.ok()) throw std::runtime_error("Range " + prefix + ": " + status.error_message());
  std::vector<std::string> keys;
  for (const auto& kv : response.kvs()) keys.push_back(kv.key());
  return keys;
}

// Every change of the election's keys and the counter since revision 1 (the fixture's etcd
// never compacts). A sentinel put after the run marks where the history ends.
std::vector<chaos::KvChange> read_history(const std::string& endpoint) {
  auto channel = grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
  // Covers "chaos/..." and "chaos-counter"; the sentinel sorts between them and the end.
  const std::string from = election_name, to = range_end_of(election_name);
  const std::string sentinel = election_name + ".end";
  std::int64_t last = 0;
  {
    auto kv = etcdserverpb::KV::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 5s);
    etcdserverpb::PutRequest put;
    put.set_key(sentinel);
    put.set_value("end");
    etcdserverpb::PutResponse reply;
    const auto status = kv->Put(&context, put, &reply);
    if (!status.ok()) throw std::runtime_error("sentinel put: " + status.error_message());
    last = reply.header().revision();
  }
  auto watch = etcdserverpb::Watch::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 60s);
  auto stream = watch->Watch(&context);
  etcdserverpb::WatchRequest request;
  auto* create = request.mutable_create_request();
  create->set_key(from);
  create->set_range_end(to);
  create->set_start_revision(1);
  if (!stream->Write(request)) throw std::runtime_error("watch: cannot send the request");
  std::vector<chaos::KvChange> history;
  etcdserverpb::WatchResponse response;
  bool done = false;
  while (!done && stream->Read(&response)) {
    if (response.canceled())
      throw std::runtime_error("watch canceled: " + response.cancel_reason() + " (compacted at " +
                               std::to_string(response.compact_revision()) + ")");
    for (const auto& e : response.events()) {
      if (e.kv().mod_revision() >= last) done = true;
      if (e.kv().key() == sentinel) continue;
      chaos::KvChange change;
      change.revision = e.kv().mod_revision();
      change.put = e.type() == mvccpb::Event::PUT;
      change.key = e.kv().key();
      change.create_revision = e.kv().create_revision();
      change.value = e.kv().value();
      history.push_back(std::move(change));
    }
  }
  context.TryCancel();
  stream->WritesDone();
  (void)stream->Finish();
  if (!done) throw std::runtime_error("watch ended before the history was complete");
  return history;
}

// --- the run ------------------------------------------------------------------------------------

struct WorkerRun {
  int slot = 0;
  std::string node;
  pid_t pid = -1;
  fs::path out;
  std::int64_t started_us = 0;
  std::optional<std::int64_t> ended_us;
  std::optional<int> exit_code;
  bool exited() const { return ended_us.has_value(); }
};

class Runner {
 public:
  Runner(asio::io_context& io, Options options) : io_(io), options_(std::move(options)) {
    rng_.seed(options_.seed);
    etcd_dir_ = options_.out / "etcd";
    fs::create_directories(options_.out / "workers");
    fs::create_directories(options_.out / "logs");
    bash_ = find_program("bash");
    etcdctl_ = find_program("etcdctl");
  }

  ~Runner() { clean_up(); }

  /// Stops every process this run started, by pid; safe to call more than once.
  void clean_up() {
    for (auto& proxy : proxies_) proxy->close();
    children_.reap();
    children_.kill_all();
    if (etcd_started_) {
      run_blocking({bash_, options_.fixture, "stop", etcd_dir_.string()});
      etcd_started_ = false;
    }
  }

  asio::awaitable<void> run() {
    asio::co_spawn(io_, reaper(), asio::detached);
    start_us_ = now_us();
    wall_minus_mono_us_ = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count() -
                          now_us();
    log("starting a " + std::to_string(members) + "-member etcd cluster in " + etcd_dir_.string());
    etcd_started_ = true;
    auto start = fixture("start", std::to_string(members));
    co_await command(std::move(start), "fixture-start", 90s);
    for (int m = 1; m <= members; ++m) {
      const auto endpoint = trim(read_text(etcd_dir_ / ("m" + std::to_string(m) + ".endpoint")));
      member_endpoints_.push_back(endpoint);
      const auto colon = endpoint.rfind(':');
      member_ports_.push_back(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
    }
    for (int slot = 1; slot <= options_.workers; ++slot) {
      std::vector<std::uint16_t> ports;
      for (int m = 0; m < members; ++m) {
        proxies_.push_back(std::make_unique<chaos::Proxy>(
            io_.get_executor(),
            chaos::tcp::endpoint(asio::ip::address_v4::loopback(), member_ports_[m])));
        ports.push_back(proxies_.back()->port());
      }
      slot_ports_.push_back(ports);
      generation_.push_back(0);
      current_.push_back(0);
      start_worker(slot);
    }
    window_from_us_ = now_us();
    const bool led = co_await wait_for_leader(15s);
    if (!led) log("no leader within 15 s of the start");

    const auto faults_end = Clock::now() + std::chrono::seconds(options_.duration_s);
    std::vector<std::string> deck = options_.faults.empty() ? all_fault_kinds() : options_.faults;
    std::size_t next = deck.size();
    while (Clock::now() < faults_end) {
      if (next == deck.size()) {
        std::shuffle(deck.begin(), deck.end(), rng_);
        next = 0;
      }
      // One recovery at a time: a fault lands once the election has a leader again (or after
      // TTL + 5 s without one), so a leaderless gap is the recovery from the faults before it,
      // not also from one that struck the next candidate in line halfway through.
      co_await wait_for_leader(std::chrono::seconds(options_.ttl_s + 5));
      co_await inject(deck[next++]);
      co_await sleep(uniform_ms(1500, 3000));
    }

    log("faults done; letting the election settle");
    co_await wait_for_leader(std::chrono::seconds(options_.ttl_s + 5));
    co_await sleep(2s);
    window_to_us_ = now_us();
    co_await stop_workers();
    end_us_ = now_us();
  }

  chaos::CheckInput collect() {
    chaos::CheckInput input;
    input.election = election_name;
    input.counter_key = counter_key;
    input.ttl_us = std::int64_t{options_.ttl_s} * 1'000'000;
    input.window = {window_from_us_, window_to_us_};
    input.origin_us = start_us_;
    input.quorum_down = quorum_down_;
    input.raft_leader_lost_us = raft_leader_lost_;
    input.raft_leader_changes_us = raft_leader_changes();
    for (const auto& w : runs_) {
      chaos::WorkerRun run;
      run.node = w.node;
      run.slot = w.slot;
      run.started_us = w.started_us;
      run.ended_us = w.ended_us;
      run.events = events_of(w);
      input.workers.push_back(std::move(run));
    }
    // Workers that were SIGKILLed leave keys until their lease expires: give that time.
    const auto until = Clock::now() + std::chrono::seconds(options_.ttl_s + 3);
    for (;;) {
      // The candidates, and the signatures of resignations (election + "0\0" + lease), which
      // go with their leases.
      input.keys_left = with_any_member([&](const std::string& endpoint) {
        auto keys = keys_under(endpoint, election_name + "/");
        for (auto key : keys_under(endpoint, election_name + std::string("0\0", 2))) {
          if (const auto nul = key.find('\0'); nul != std::string::npos) key.replace(nul, 1, "\\0");
          keys.push_back(key);
        }
        return keys;
      });
      if (input.keys_left.empty() || Clock::now() >= until) break;
      std::this_thread::sleep_for(200ms);
    }
    input.history =
        with_any_member([&](const std::string& endpoint) { return read_history(endpoint); });
    return input;
  }

  // When each member became raft leader, from its log (etcd's JSON lines, "ts" in UTC with
  // milliseconds), on the clock of the workers' events.
  std::vector<std::int64_t> raft_leader_changes() const {
    std::vector<std::int64_t> changes;
    for (int i = 1; i <= members; ++i) {
      std::ifstream in(options_.out / "etcd" / ("m" + std::to_string(i) + ".log"));
      std::string line;
      while (std::getline(in, line)) {
        if (line.find("became leader at term") == std::string::npos) continue;
        const auto at = line.find("\"ts\":\"");
        if (at == std::string::npos) continue;
        std::tm tm{};
        int millis = 0;
        if (std::sscanf(line.c_str() + at + 6, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
                        &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &millis) != 7)
          continue;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        const std::int64_t wall_us = std::int64_t{timegm(&tm)} * 1'000'000 + millis * 1000;
        changes.push_back(wall_us - wall_minus_mono_us_);
      }
    }
    std::sort(changes.begin(), changes.end());
    return changes;
  }

  chaos::RunInfo info(const std::string& command) const {
    chaos::RunInfo run;
    run.seed = options_.seed;
    run.duration_s = options_.duration_s;
    run.workers = options_.workers;
    run.members = members;
    run.ttl_s = options_.ttl_s;
    run.takeover_delay_ms = options_.takeover_delay_ms;
    run.lock_writes = options_.lock_writes;
    run.stop_latency_min_ms = options_.stop_latency_min_ms;
    run.stop_latency_max_ms = options_.stop_latency_max_ms;
    // The delay the workers chose, from any worker's `etcd` event (they all ask the same etcd).
    for (const auto& w : runs_) {
      if (run.takeover_delay_ms >= 0) break;
      for (const auto& e : events_of(w))
        if (e.event() == "etcd") {
          run.takeover_delay_ms = e.num("takeover_delay_ms");
          run.takeover_delay_chosen = true;
          break;
        }
    }
    run.start_us = start_us_;
    run.end_us = end_us_ ? end_us_ : now_us();
    run.command = command;
    run.notes = notes_;
    return run;
  }

  const std::vector<chaos::Fault>& faults() const { return faults_; }

 private:
  template <class F>
  auto with_any_member(F f) -> decltype(f(std::string())) {
    std::string failures;
    for (const auto& endpoint : member_endpoints_) {
      try {
        return f(endpoint);
      } catch (const std::exception& e) {
        failures += std::string(" ") + endpoint + ": " + e.what() + ";";
      }
    }
    throw std::runtime_error("no etcd member answered:" + failures);
  }

  // `bash etcd-fixture.sh WHAT DIR [ARG]`
  std::vector<std::string> fixture(const std::string& what, const std::string& arg = {}) const {
    std::vector<std::string> argv{bash_, options_.fixture, what, etcd_dir_.string()};
    if (!arg.empty()) argv.push_back(arg);
    return argv;
  }

  void log(const std::string& text) {
    const auto t = static_cast<double>(now_us() - start_us_) / 1e6;
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "[%7.2f s] ", t);
    std::cout << stamp << text << std::endl;
  }

  std::chrono::milliseconds uniform_ms(int from, int to) {
    return std::chrono::milliseconds(std::uniform_int_distribution<int>(from, to)(rng_));
  }
  bool coin() { return std::uniform_int_distribution<int>(0, 1)(rng_) == 1; }

  asio::awaitable<void> sleep(Clock::duration d) {
    asio::steady_timer timer(co_await asio::this_coro::executor, d);
    co_await timer.async_wait(asio::use_awaitable);
  }

  asio::awaitable<void> reaper() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
      children_.reap();
      for (auto& w : runs_) {
        if (w.exited()) continue;
        if (const auto exit = children_.exit_of(w.pid)) {
          w.ended_us = exit->at_us;
          w.exit_code = exit->code;
        }
      }
      timer.expires_after(10ms);
      co_await timer.async_wait(asio::use_awaitable);
    }
  }

  /// Runs a command to its end within `limit`; throws if it fails or takes longer.
  asio::awaitable<void> command(std::vector<std::string> argv, const std::string& name,
                                Clock::duration limit) {
    const auto log_file =
        options_.out / "logs" / (name + "-" + std::to_string(++commands_) + ".log");
    const pid_t pid = children_.spawn(std::move(argv), log_file, true);
    const auto end = Clock::now() + limit;
    for (;;) {
      if (const auto exit = children_.exit_of(pid)) {
        if (exit->code != 0)
          throw std::runtime_error(name + " failed (" + std::to_string(exit->code) + "): " +
                                   read_text(log_file.string() + ".err") + read_text(log_file));
        co_return;
      }
      if (Clock::now() >= end) {
        ::kill(pid, SIGKILL);
        throw std::runtime_error(name + " did not finish in time");
      }
      co_await sleep(20ms);
    }
  }

  // The stop latency of a worker process: from the seed, its slot and its incarnation alone
  // (not from rng_, whose draws stay the deck's), so a replay gives each process the same.
  int stop_latency_of(int slot, int incarnation) const {
    if (options_.stop_latency_max_ms <= 0) return 0;
    std::seed_seq seq{static_cast<std::uint32_t>(options_.seed),
                      static_cast<std::uint32_t>(options_.seed >> 32),
                      static_cast<std::uint32_t>(slot), static_cast<std::uint32_t>(incarnation)};
    std::mt19937 draw(seq);
    return std::uniform_int_distribution<int>(options_.stop_latency_min_ms,
                                              options_.stop_latency_max_ms)(draw);
  }

  void start_worker(int slot) {
    WorkerRun w;
    w.slot = slot;
    const int incarnation = generation_[slot - 1]++;
    w.node = "w" + std::to_string(slot) + "." + std::to_string(incarnation);
    w.out = options_.out / "workers" / (w.node + ".jsonl");
    std::string endpoints;
    for (const auto port : slot_ports_[slot - 1])
      endpoints +=
          (endpoints.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(port);
    std::vector<std::string> argv{options_.worker,
                                  "--node",
                                  w.node,
                                  "--election",
                                  election_name,
                                  "--ttl",
                                  std::to_string(options_.ttl_s),
                                  "--json",
                                  "--endpoints",
                                  endpoints};
    if (options_.lock_writes > 0) {
      argv.push_back("--lock");
      argv.push_back(std::to_string(options_.lock_writes));
    }
    if (options_.takeover_delay_ms >= 0) {
      argv.push_back("--takeover-delay");
      argv.push_back(std::to_string(options_.takeover_delay_ms));
    }
    const int stop_latency = stop_latency_of(slot, incarnation);
    if (options_.stop_latency_max_ms > 0) {
      argv.push_back("--stop-latency");
      argv.push_back(std::to_string(stop_latency));
      stop_latencies_ += w.node + "\t" + std::to_string(stop_latency) + "\n";
      write_text(options_.out / "stop-latency.tsv", stop_latencies_);
    }
    w.pid = children_.spawn(std::move(argv), w.out, true);
    w.started_us = now_us();
    write_text(options_.out / "workers" / (w.node + ".pid"), std::to_string(w.pid) + "\n");
    current_[slot - 1] = runs_.size();
    runs_.push_back(std::move(w));
    log("started " + runs_.back().node + " (pid " + std::to_string(runs_.back().pid) +
        (options_.stop_latency_max_ms > 0 ? ", stop latency " + std::to_string(stop_latency) + " ms"
                                          : std::string()) +
        ")");
  }

  std::vector<chaos::WorkerEvent> events_of(const WorkerRun& w) const {
    return election::test::parse_worker_events(read_text(w.out));
  }

  // The running worker whose own events say it leads now (the latest elected, if several). A
  // work cancelled means the leadership has ended, though `lost` waits for the work to stop.
  std::optional<std::size_t> leader() const {
    std::optional<std::size_t> best;
    std::int64_t best_at = 0;
    for (int slot = 1; slot <= options_.workers; ++slot) {
      const auto index = current_[slot - 1];
      const auto& w = runs_[index];
      if (w.exited()) continue;
      std::optional<std::int64_t> elected_at;
      for (const auto& e : events_of(w)) {
        if (e.event() == "elected") elected_at = e.mono_us();
        if (e.event() == "lost" || e.event() == "resigned" || e.event() == "work-cancelled")
          elected_at.reset();
      }
      if (elected_at && (!best || *elected_at > best_at)) {
        best = index;
        best_at = *elected_at;
      }
    }
    return best;
  }

  asio::awaitable<bool> wait_for_leader(Clock::duration limit) {
    const auto end = Clock::now() + limit;
    while (Clock::now() < end) {
      if (leader()) co_return true;
      co_await sleep(100ms);
    }
    co_return false;
  }

  // The leader if there is one within a TTL and a bit, else any running worker.
  asio::awaitable<std::size_t> leader_or_any() {
    co_await wait_for_leader(std::chrono::seconds(options_.ttl_s + 3));
    if (const auto l = leader()) co_return *l;
    co_return current_[std::uniform_int_distribution<int>(0, options_.workers - 1)(rng_)];
  }

  std::string endpoint_list() const {
    std::string list;
    for (const auto& e : member_endpoints_) list += (list.empty() ? "" : ",") + e;
    return list;
  }

  struct MemberStatus {
    int member = 0;  // 0-based
    std::string id;  // hex, as etcdctl prints it (and move-leader takes it)
    bool raft_leader = false;
  };

  // What `etcdctl endpoint status` says of the members that answer.
  asio::awaitable<std::vector<MemberStatus>> member_status() {
    const auto log_file =
        options_.out / "logs" / ("status-" + std::to_string(++commands_) + ".log");
    std::vector<std::string> argv{etcdctl_,
                                  "--endpoints=" + endpoint_list(),
                                  "--dial-timeout=1s",
                                  "--command-timeout=2s",
                                  "endpoint",
                                  "status",
                                  "-w",
                                  "simple"};
    try {
      co_await command_to(log_file, std::move(argv));
    } catch (const std::exception&) {
      // Some member may not answer; the others' lines are still there.
    }
    std::vector<MemberStatus> status;
    std::istringstream lines(read_text(log_file));
    // Columns: endpoint, id, version, db size, is leader, is learner, ...
    for (std::string line; std::getline(lines, line);) {
      std::vector<std::string> columns;
      std::istringstream fields(line);
      for (std::string c; std::getline(fields, c, ',');) columns.push_back(trim(c));
      if (columns.size() < 5) continue;
      for (int m = 0; m < members; ++m)
        if (member_endpoints_[m] == columns[0])
          status.push_back({m, columns[1], columns[4] == "true"});
    }
    co_return status;
  }

  // The member etcdctl reports as raft leader (0-based), if one answers.
  asio::awaitable<std::optional<int>> raft_leader() {
    const auto status = co_await member_status();
    for (const auto& s : status)
      if (s.raft_leader) co_return s.member;
    co_return std::nullopt;
  }

  asio::awaitable<void> command_to(const fs::path& out, std::vector<std::string> argv) {
    const pid_t pid = children_.spawn(std::move(argv), out, true);
    const auto end = Clock::now() + 10s;
    while (!children_.exit_of(pid)) {
      if (Clock::now() >= end) {
        ::kill(pid, SIGKILL);
        throw std::runtime_error("etcdctl did not finish in time");
      }
      co_await sleep(20ms);
    }
    if (children_.exit_of(pid)->code != 0) throw std::runtime_error("etcdctl failed");
  }

  // Half the time the raft leader, else any member (which may be the raft leader too: the
  // label and `is_raft_leader` say what it was).
  asio::awaitable<int> member_target(std::string& label, bool& is_raft_leader) {
    const auto leader = co_await raft_leader();
    std::optional<int> target;
    if (coin()) target = leader;
    if (!target) target = std::uniform_int_distribution<int>(0, members - 1)(rng_);
    is_raft_leader = leader && *leader == *target;
    label = "m" + std::to_string(*target + 1) + (is_raft_leader ? " (raft leader)" : "");
    co_return *target;
  }

  pid_t member_pid(int m) const {
    return static_cast<pid_t>(
        std::stol(trim(read_text(etcd_dir_ / ("m" + std::to_string(m + 1) + ".pid")))));
  }

  // --- freeze-watch: what it needs to know first ---------------------------------------------

  struct InLine {
    std::string lease;  // hex, as leader-worker prints it
    std::int64_t create_revision = 0;
  };

  // The election's candidate keys, first in line first, from etcd (`etcdctl get -w fields`:
  // a "Key" line opens each key, its "CreateRevision" and "Lease" follow). Throws when etcdctl
  // fails.
  asio::awaitable<std::vector<InLine>> candidates_in_line() {
    const auto log_file =
        options_.out / "logs" / ("in-line-" + std::to_string(++commands_) + ".log");
    std::vector<std::string> argv{etcdctl_,
                                  "--endpoints=" + endpoint_list(),
                                  "--dial-timeout=1s",
                                  "--command-timeout=2s",
                                  "get",
                                  "--prefix",
                                  election_name + "/",
                                  "--sort-by=CREATE",
                                  "--order=ASCEND",
                                  "--keys-only",
                                  "-w",
                                  "fields"};
    co_await command_to(log_file, std::move(argv));
    const std::string key = "\"Key\" : ", created = "\"CreateRevision\" : ", lease = "\"Lease\" : ";
    std::vector<InLine> line;
    std::istringstream lines(read_text(log_file));
    for (std::string text; std::getline(lines, text);) {
      if (text.rfind(key, 0) == 0)
        line.emplace_back();
      else if (!line.empty() && text.rfind(created, 0) == 0)
        line.back().create_revision = std::stoll(text.substr(created.size()));
      else if (!line.empty() && text.rfind(lease, 0) == 0)
        line.back().lease = election::lease_hex(std::stoll(text.substr(lease.size())));
    }
    std::stable_sort(line.begin(), line.end(), [](const InLine& a, const InLine& b) {
      return a.create_revision < b.create_revision;
    });
    co_return line;
  }

  // The running worker whose latest `campaigning` event names `lease`.
  std::optional<std::size_t> worker_with_lease(const std::string& lease) const {
    for (int slot = 1; slot <= options_.workers; ++slot) {
      const auto index = current_[slot - 1];
      if (runs_[index].exited()) continue;
      std::string latest;
      for (const auto& e : events_of(runs_[index]))
        if (e.event() == "campaigning") latest = e.str("lease");
      if (!latest.empty() && latest == lease) return index;
    }
    return std::nullopt;
  }

  // The member (0-based) a worker's election watch answers from: the proxy port in its latest
  // `stream` event of kind `watch` (a later `watch-stalled` means the watch is moving off it:
  // `moving` is then set, and that member is still the answer). Empty, with `why`, when the
  // worker has reported none or names no proxy of its own.
  std::optional<int> watch_member(std::size_t index, bool& moving, std::string& why) const {
    const auto& w = runs_[index];
    std::string peer;
    moving = false;
    for (const auto& e : events_of(w)) {
      if (e.event() != "stream") continue;
      const auto kind = e.str("kind");
      if (kind == "watch") {
        peer = e.str("peer");
        moving = false;
      } else if (kind == "watch-stalled") {
        moving = true;
      }
    }
    if (peer.empty()) {
      why = w.node + " has reported no watch stream yet";
      return std::nullopt;
    }
    const auto colon = peer.rfind(':');
    int port = -1;
    try {
      port = std::stoi(peer.substr(colon == std::string::npos ? 0 : colon + 1));
    } catch (const std::exception&) {
    }
    const auto& ports = slot_ports_[w.slot - 1];
    for (int m = 0; m < members; ++m)
      if (ports[m] == port) return m;
    why = w.node + "'s watch answers from " + peer + ", none of its proxies";
    return std::nullopt;
  }

  struct WatchPlan {
    std::size_t leader = 0;  // in runs_: the leader worker, to be killed
    std::size_t next = 0;    // in runs_: the candidate second in line
    int member = 0;          // 0-based: the member the next candidate's watch answers from
    bool moving = false;     // that watch had stalled there and is moving off it
  };

  // Who leads, who is next in line and where its watch is; empty, with `why`, when that
  // cannot be made out now.
  asio::awaitable<std::optional<WatchPlan>> watch_plan(std::string& why) {
    const auto leader_index = leader();
    if (!leader_index) {
      why = "no leader";
      co_return std::nullopt;
    }
    std::vector<InLine> line;
    try {
      line = co_await candidates_in_line();
    } catch (const std::exception& e) {
      why = std::string("etcdctl get failed: ") + e.what();
      co_return std::nullopt;
    }
    if (line.size() < 2) {
      why = std::to_string(line.size()) + " candidate(s) in line, no second";
      co_return std::nullopt;
    }
    const auto first = worker_with_lease(line[0].lease);
    if (!first || *first != *leader_index) {
      why = "the key first in line (lease " + line[0].lease + ") is not the leader's (" +
            runs_[*leader_index].node + ")";
      co_return std::nullopt;
    }
    const auto next = worker_with_lease(line[1].lease);
    if (!next) {
      why = "no running worker campaigns with lease " + line[1].lease + ", second in line";
      co_return std::nullopt;
    }
    WatchPlan plan;
    plan.leader = *leader_index;
    plan.next = *next;
    const auto member = watch_member(*next, plan.moving, why);
    if (!member) co_return std::nullopt;
    plan.member = *member;
    co_return plan;
  }

  // Hands raft leadership from member `m` to another one that answers (etcdctl move-leader, as
  // tests/support/etcd_cluster.hpp's move_leader_away_from does) and waits until etcd says it
  // moved; false, with `why`, when it did not.
  asio::awaitable<bool> move_raft_leader_away(int m, std::string& why) {
    const auto status = co_await member_status();
    std::optional<MemberStatus> to;
    bool m_leads = false;
    for (const auto& s : status) {
      if (s.member == m)
        m_leads = s.raft_leader;
      else if (!to)
        to = s;
    }
    if (!m_leads) co_return true;
    if (!to) {
      why = "no other member answered to take over raft leadership";
      co_return false;
    }
    log("freeze-watch: m" + std::to_string(m + 1) + " is raft leader: move-leader to m" +
        std::to_string(to->member + 1));
    const auto log_file =
        options_.out / "logs" / ("move-leader-" + std::to_string(++commands_) + ".log");
    std::vector<std::string> argv{etcdctl_,
                                  "--endpoints=" + member_endpoints_[m],
                                  "--dial-timeout=1s",
                                  "--command-timeout=3s",
                                  "move-leader",
                                  to->id};
    try {
      co_await command_to(log_file, std::move(argv));
    } catch (const std::exception& e) {
      why = std::string("etcdctl move-leader failed: ") + e.what();
      co_return false;
    }
    const auto end = Clock::now() + 5s;
    while (Clock::now() < end) {
      const auto now_leads = co_await raft_leader();
      if (now_leads && *now_leads != m) co_return true;
      co_await sleep(100ms);
    }
    why = "m" + std::to_string(m + 1) + " still raft leader 5 s after move-leader";
    co_return false;
  }

  // freeze-watch. If the plan cannot be made (no leader, no second candidate in line or none
  // that maps to a running worker, no watch stream reported, raft leadership that will not
  // move) within five tries half a second apart, the fault is skipped: logged and noted in the
  // summary, nothing in its place. Another kind instead would only add one the deck already
  // deals, and a freeze-watch row then always means the combination happened.
  asio::awaitable<void> freeze_watch(std::chrono::seconds ttl) {
    std::optional<WatchPlan> plan;
    std::string why;
    bool ready = false;
    for (int attempt = 0; attempt < 5 && !ready; ++attempt) {
      if (attempt > 0) co_await sleep(500ms);
      plan = co_await watch_plan(why);
      if (!plan) continue;
      const auto raft = co_await raft_leader();
      if (!raft) {
        why = "no member says which is raft leader";
        continue;
      }
      if (*raft != plan->member) {
        ready = true;
        continue;
      }
      // The watch is on the raft leader: hand that on, then look again (the plan may change).
      const bool moved = co_await move_raft_leader_away(plan->member, why);
      if (!moved) plan.reset();
    }
    if (!ready) {
      const auto t = static_cast<double>(now_us() - start_us_) / 1e6;
      char stamp[32];
      std::snprintf(stamp, sizeof stamp, "%.3f s", t);
      log("freeze-watch: skipped: " + why);
      notes_.push_back("freeze-watch skipped at " + std::string(stamp) + ": " + why);
      co_return;
    }
    // Copies: start_worker() below grows runs_.
    const auto leader_index = plan->leader;
    const auto leader_node = runs_[leader_index].node;
    const auto leader_slot = runs_[leader_index].slot;
    const auto next_node = runs_[plan->next].node;
    const int m = plan->member;
    const auto member = "m" + std::to_string(m + 1);
    const auto pid = member_pid(m);
    const auto target = next_node + " watch on " + member + ", leader " + leader_node + " killed";
    const auto from = now_us();
    log("freeze-watch: SIGSTOP " + member + ", where " + next_node + " (next in line) watches" +
        (plan->moving ? " (its watch had stalled there)" : "") + "; SIGKILL " + leader_node +
        " 200 ms later");
    ::kill(pid, SIGSTOP);
    co_await sleep(200ms);
    ::kill(runs_[leader_index].pid, SIGKILL);
    const auto killed = now_us();
    while (!runs_[leader_index].exited()) co_await sleep(10ms);
    start_worker(leader_slot);
    // Frozen until TTL + 3 s after the kill: the whole takeover happens with it frozen.
    const auto thaw_at =
        killed + std::chrono::duration_cast<std::chrono::microseconds>(ttl + 3s).count();
    bool led = false;
    while (now_us() < thaw_at) {
      if (!led) {
        if (const auto l = leader()) {
          led = true;
          log("freeze-watch: " + runs_[*l].node + " leads (seen " +
              std::to_string((now_us() - killed) / 1000) + " ms after the kill)");
        }
      }
      co_await sleep(
          std::chrono::microseconds(std::clamp<std::int64_t>(thaw_at - now_us(), 0, 100'000)));
    }
    ::kill(pid, SIGCONT);
    record("freeze-watch", target, member, from);
    faults_.back().killed_us = killed;
    faults_.back().killed_row = "w" + std::to_string(leader_slot);
    faults_.back().next_in_line = next_node;
  }

  void record(const std::string& kind, const std::string& target, const std::string& row,
              std::int64_t from_us) {
    chaos::Fault fault;
    fault.kind = kind;
    fault.target = target;
    fault.row = row;
    fault.from_us = from_us;
    fault.to_us = now_us();
    faults_.push_back(std::move(fault));
    log(kind + " " + target + ": done after " +
        std::to_string((faults_.back().to_us - from_us) / 1000) + " ms");
  }

  asio::awaitable<void> inject(const std::string& kind) {
    const auto ttl = std::chrono::seconds(options_.ttl_s);
    if (kind == "kill-leader") {
      const auto index = co_await leader_or_any();
      const auto node = runs_[index].node;
      const auto slot = runs_[index].slot;
      const auto from = now_us();
      log("kill-leader: SIGKILL " + node);
      ::kill(runs_[index].pid, SIGKILL);
      while (!runs_[index].exited()) co_await sleep(10ms);
      record(kind, node, "w" + std::to_string(slot), from);
      start_worker(slot);
    } else if (kind == "pause-leader") {
      const auto index = co_await leader_or_any();
      const auto node = runs_[index].node;
      const auto from = now_us();
      log("pause-leader: SIGSTOP " + node + " for longer than its TTL");
      ::kill(runs_[index].pid, SIGSTOP);
      co_await sleep(ttl + uniform_ms(500, 2500));
      ::kill(runs_[index].pid, SIGCONT);
      record(kind, node, "w" + std::to_string(runs_[index].slot), from);
    } else if (kind == "cut-worker") {
      // Half the time the leader (a leader cut off must step down), else any worker.
      std::size_t index =
          current_[std::uniform_int_distribution<int>(0, options_.workers - 1)(rng_)];
      if (coin()) {
        const auto chosen = co_await leader_or_any();
        index = chosen;
      }
      const auto node = runs_[index].node;
      const auto slot = runs_[index].slot;
      const auto from = now_us();
      const auto length = uniform_ms(1000, 1000 * (options_.ttl_s + 3));
      log("cut-worker: " + node + " cut off from etcd for " + std::to_string(length.count()) +
          " ms");
      for (int m = 0; m < members; ++m) proxies_[(slot - 1) * members + m]->cut();
      co_await sleep(length);
      for (int m = 0; m < members; ++m) proxies_[(slot - 1) * members + m]->heal();
      record(kind, node, "w" + std::to_string(slot), from);
    } else if (kind == "slow-link") {
      // Half the time the leader (a slowed leader must keep leading), else any worker.
      std::size_t index =
          current_[std::uniform_int_distribution<int>(0, options_.workers - 1)(rng_)];
      if (coin()) {
        const auto chosen = co_await leader_or_any();
        index = chosen;
      }
      const auto node = runs_[index].node;
      const auto slot = runs_[index].slot;
      const auto from = now_us();
      const auto length = uniform_ms(10000, 20000);
      const auto delay = std::chrono::milliseconds(options_.slow_link_ms);
      log("slow-link: " + node + " " + std::to_string(delay.count()) +
          " ms each way to every etcd member for " + std::to_string(length.count()) + " ms");
      for (int m = 0; m < members; ++m) proxies_[(slot - 1) * members + m]->set_delay(delay);
      co_await sleep(length);
      for (int m = 0; m < members; ++m) proxies_[(slot - 1) * members + m]->set_delay(0ms);
      record(kind, node, "w" + std::to_string(slot), from);
    } else if (kind == "freeze-member") {
      std::string label;
      bool was_raft_leader = false;
      const int m = co_await member_target(label, was_raft_leader);
      const auto pid = member_pid(m);
      const auto from = now_us();
      if (was_raft_leader) raft_leader_lost_.push_back(from);
      log("freeze-member: SIGSTOP " + label);
      ::kill(pid, SIGSTOP);
      co_await sleep(uniform_ms(2000, 6000));
      ::kill(pid, SIGCONT);
      record(kind, label, "m" + std::to_string(m + 1), from);
    } else if (kind == "kill-member") {
      std::string label;
      bool was_raft_leader = false;
      const int m = co_await member_target(label, was_raft_leader);
      const auto from = now_us();
      if (was_raft_leader) raft_leader_lost_.push_back(from);
      log("kill-member: SIGKILL " + label);
      auto kill = fixture("kill-member", std::to_string(m + 1));
      co_await command(std::move(kill), "kill-member", 30s);
      co_await sleep(uniform_ms(1000, 4000));
      auto start = fixture("start-member", std::to_string(m + 1));
      co_await command(std::move(start), "start-member", 60s);
      record(kind, label, "m" + std::to_string(m + 1), from);
    } else if (kind == "restart-cluster") {
      const auto from = now_us();
      log("restart-cluster: stopping every member");
      auto stop = fixture("stop");
      co_await command(std::move(stop), "stop-cluster", 60s);
      co_await sleep(uniform_ms(500, 2000));
      // Each start-member waits for its member to be healthy, which needs a quorum: all at once.
      std::vector<pid_t> starts;
      for (int m = 1; m <= members; ++m) {
        const auto log_file =
            options_.out / "logs" / ("start-member-" + std::to_string(++commands_) + ".log");
        starts.push_back(
            children_.spawn(fixture("start-member", std::to_string(m)), log_file, true));
      }
      const auto end = Clock::now() + 60s;
      for (const auto pid : starts) {
        while (!children_.exit_of(pid)) {
          if (Clock::now() >= end) throw std::runtime_error("the cluster did not come back");
          co_await sleep(20ms);
        }
        if (children_.exit_of(pid)->code != 0)
          throw std::runtime_error("a member did not start again after the cluster restart");
      }
      quorum_down_.push_back({from, now_us()});
      record(kind, "all members", "etcd", from);
    } else if (kind == "freeze-watch") {
      co_await freeze_watch(ttl);
    }
  }

  asio::awaitable<void> stop_workers() {
    log("stopping every worker with SIGTERM");
    std::vector<std::size_t> stopping;
    for (std::size_t i = 0; i < runs_.size(); ++i) {
      auto& w = runs_[i];
      if (w.exited()) continue;
      stopping.push_back(i);
      ::kill(w.pid, SIGCONT);
      ::kill(w.pid, SIGTERM);
    }
    const auto end = Clock::now() + 10s;
    for (const auto i : stopping) {
      auto& w = runs_[i];
      while (!w.exited() && Clock::now() < end) co_await sleep(10ms);
      if (!w.exited()) {
        log(w.node + " did not exit within 10 s of SIGTERM: SIGKILL");
        ::kill(w.pid, SIGKILL);
        while (!w.exited()) co_await sleep(10ms);
      } else if (w.exit_code != 0) {
        log(w.node + " exited with " + std::to_string(*w.exit_code) + " after SIGTERM");
      }
    }
  }

  asio::io_context& io_;
  Options options_;
  std::mt19937_64 rng_;
  fs::path etcd_dir_;
  std::string bash_, etcdctl_;
  Children children_;
  bool etcd_started_ = false;
  int commands_ = 0;
  std::vector<std::string> member_endpoints_;
  std::vector<std::uint16_t> member_ports_;
  std::vector<std::unique_ptr<chaos::Proxy>> proxies_;  // slot-major: slot s, member m
  std::vector<std::vector<std::uint16_t>> slot_ports_;
  std::vector<int> generation_;
  std::vector<std::size_t> current_;  // per slot: its running worker in runs_
  std::vector<WorkerRun> runs_;
  std::vector<chaos::Fault> faults_;
  std::vector<chaos::Interval> quorum_down_;
  std::vector<std::int64_t> raft_leader_lost_;  // a raft leader killed or frozen, then
  std::vector<std::string> notes_;              // faults skipped, and why: for the summary
  std::string stop_latencies_;                  // stop-latency.tsv: node, ms
  std::int64_t start_us_ = 0, end_us_ = 0, window_from_us_ = 0, window_to_us_ = 0;
  std::int64_t wall_minus_mono_us_ = 0;  // to put the members' log times on our clock
};

std::optional<Options> parse(int argc, char** argv) {
  Options o;
  o.seed =
      static_cast<std::uint64_t>(std::random_device{}()) ^ static_cast<std::uint64_t>(now_us());
  o.seed %= 1'000'000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--duration")
      o.duration_s = std::stoi(value());
    else if (arg == "--seed")
      o.seed = std::stoull(value());
    else if (arg == "--workers")
      o.workers = std::stoi(value());
    else if (arg == "--ttl")
      o.ttl_s = std::stoi(value());
    else if (arg == "--takeover-delay")
      o.takeover_delay_ms = std::stoi(value());
    else if (arg == "--out")
      o.out = value();
    else if (arg == "--worker")
      o.worker = value();
    else if (arg == "--fixture")
      o.fixture = value();
    else if (arg == "--gaps-advisory")
      o.gaps_advisory = true;
    else if (arg == "--slow-link-ms")
      o.slow_link_ms = std::stoi(value());
    else if (arg == "--stop-latency") {
      const auto range = value();
      const auto refused =
          std::invalid_argument("--stop-latency needs MS or MIN-MAX, 0 <= MIN <= MAX <= 60000");
      // Digits only on each side of the one dash: no sign, no blank, nothing after.
      const auto dash = range.find('-');
      const auto low = range.substr(0, dash);
      const auto high = dash == std::string::npos ? low : range.substr(dash + 1);
      for (const auto& part : {low, high})
        if (part.empty() || part.size() > 5 ||
            part.find_first_not_of("0123456789") != std::string::npos)
          throw refused;
      o.stop_latency_min_ms = std::stoi(low);
      o.stop_latency_max_ms = std::stoi(high);
      if (o.stop_latency_max_ms < o.stop_latency_min_ms || o.stop_latency_max_ms > 60'000)
        throw refused;
    } else if (arg == "--lock") {
      o.lock_writes = std::stoi(value());
      if (o.lock_writes < 1) throw std::invalid_argument("--lock needs N >= 1 writes a hold");
    } else if (arg == "--faults") {
      std::istringstream list(value());
      const auto known = all_fault_kinds();
      for (std::string kind; std::getline(list, kind, ',');) {
        if (std::find(known.begin(), known.end(), kind) == known.end())
          throw std::invalid_argument("unknown fault kind '" + kind + "' in --faults");
        o.faults.push_back(kind);
      }
      if (o.faults.empty()) throw std::invalid_argument("--faults needs at least one kind");
    } else
      throw std::invalid_argument("unknown argument " + arg);
  }
  if (o.worker.empty() || o.fixture.empty() || o.out.empty())
    throw std::invalid_argument("--worker, --fixture and --out are required");
  if (o.duration_s < 0 || o.workers < 2 || o.workers > 20 || o.ttl_s < 2 ||
      o.takeover_delay_ms < -1 || o.slow_link_ms < 0)
    throw std::invalid_argument(
        "need --duration >= 0, 2 <= --workers <= 20, --ttl >= 2, --takeover-delay >= 0, "
        "--slow-link-ms >= 0");
  o.out = fs::absolute(o.out);
  o.worker = fs::absolute(o.worker).string();
  o.fixture = fs::absolute(o.fixture).string();
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    options = *parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "chaos-runner: " << e.what() << "\n";
    return 2;
  }
  std::string command;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    command += (i ? " " : "") + arg;
    if (arg == "--seed") ++i, command += std::string(" ") + argv[i];
  }
  if (command.find("--seed") == std::string::npos)
    command += " --seed " + std::to_string(options.seed);
  std::cout << "chaos-runner: seed " << options.seed << ", " << options.duration_s
            << " s of faults, output in " << options.out.string() << std::endl;
  fs::remove_all(options.out / "workers");
  fs::remove_all(options.out / "logs");

  asio::io_context io(1);
  std::optional<Runner> runner;
  try {
    runner.emplace(io, options);
  } catch (const std::exception& e) {
    std::cerr << "chaos-runner: " << e.what() << "\n";
    return 2;
  }
  bool interrupted = false;
  std::string failure;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    interrupted = true;
    io.stop();
  });
  bool finished = false;
  asio::co_spawn(io, runner->run(), [&](std::exception_ptr e) {
    finished = true;
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& error) {
        failure = error.what();
      }
    }
    signals.cancel();
    io.stop();
  });
  io.run();
  if (interrupted || !failure.empty() || !finished) {
    std::cerr << "chaos-runner: " << (interrupted ? "interrupted" : "the run broke: " + failure)
              << "; stopping everything it started\n";
    runner->clean_up();
    return 2;
  }

  int code = 2;
  try {
    const auto input = runner->collect();
    runner->clean_up();
    const auto result = chaos::check(input);
    const auto info = runner->info(command);
    const auto text = chaos::summary(info, runner->faults(), input, result);
    write_text(options.out / "summary.txt", text);
    write_text(options.out / "timeline.svg",
               chaos::timeline_svg(info, runner->faults(), input, result));
    std::string all;
    for (const auto& v : result.violations) all += v + "\n";
    write_text(options.out / "check.txt", all);
    std::ostringstream faults;
    for (const auto& f : runner->faults())
      faults << f.kind << "\t" << f.target << "\t" << (f.from_us - info.start_us) << "\t"
             << (f.to_us - info.start_us) << "\n";
    write_text(options.out / "faults.tsv", faults.str());
    // The run's zero on the workers' clock (CLOCK_MONOTONIC, the events' mono_us): the times in
    // faults.tsv and the summary are counted from it.
    write_text(options.out / "start_us", std::to_string(info.start_us) + "\n");
    std::cout << "\n" << text << "timeline: " << (options.out / "timeline.svg").string() << "\n";
    int binding = 0, advisory = 0;
    for (const auto& v : result.violations)
      (options.gaps_advisory && v.rfind("no leader for", 0) == 0 ? advisory : binding)++;
    if (advisory > 0)
      std::cout << "liveness: " << advisory
                << " leaderless gap(s) over TTL + 2 s, reported only (--gaps-advisory); "
                   "the safety rules passed\n";
    code = binding == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "chaos-runner: checking failed: " << e.what() << "\n";
  }
  runner->clean_up();
  return code;
}
