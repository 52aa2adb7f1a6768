// Shared pieces of the benchmark programs: clocks, statistics, /proc readers, child processes
// with piped stdout, the io thread the library runs on, and the result rows.
//
// Times are CLOCK_MONOTONIC microseconds everywhere, so a time printed by one process can be
// compared with a time taken in another (std::chrono::steady_clock is CLOCK_MONOTONIC on Linux).
#pragma once

#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>

namespace election::bench {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// --- time -------------------------------------------------------------------------------------

/// CLOCK_MONOTONIC in microseconds: comparable across processes on this machine.
std::int64_t now_us();

inline double ms(std::int64_t us) { return static_cast<double>(us) / 1000.0; }

/// Sleeps on the current coroutine's executor.
asio::awaitable<void> sleep_for(std::chrono::steady_clock::duration d);

/// Polls `ready()` every `step` until it holds; throws std::runtime_error naming `what` after
/// `limit`.
template <class Predicate>
asio::awaitable<void> require_within(Predicate ready, std::chrono::steady_clock::duration limit,
                                     const std::string& what,
                                     std::chrono::steady_clock::duration step = 1ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= end)
      throw std::runtime_error("timed out waiting for " + what);
    co_await sleep_for(step);
  }
}

// --- statistics -------------------------------------------------------------------------------

class Samples {
 public:
  void add(double v) { values_.push_back(v); }
  std::size_t size() const { return values_.size(); }
  bool empty() const { return values_.empty(); }
  /// Nearest-rank percentile (p in 0..100); NaN when empty.
  double percentile(double p) const;
  double max() const;
  double min() const;
  double mean() const;

 private:
  std::vector<double> values_;
};

inline constexpr double nan = std::numeric_limits<double>::quiet_NaN();

// --- results ----------------------------------------------------------------------------------

/// One line of the results table: a figure of ours beside its baseline.
struct Row {
  std::string figure;
  std::string unit;
  double ours = nan;
  std::string baseline_name;  // what the baseline is, e.g. "floor: delete -> watch event"
  double baseline = nan;
  std::string target;  // empty: no target
  int met = -1;        // -1: no target, 0: missed, 1: met
  std::size_t samples = 0;
  std::string note;

  double ratio() const;
};

/// The rows of one scenario; written as `<out>/<scenario>.tsv` (read back by `report`) and
/// printed as a table.
class Results {
 public:
  explicit Results(std::string scenario) : scenario_(std::move(scenario)) {}
  void add(Row row) { rows_.push_back(std::move(row)); }
  void print() const;
  void write(const std::filesystem::path& out_dir) const;

 private:
  std::string scenario_;
  std::vector<Row> rows_;
};

std::string format_value(double v, const std::string& unit);

// --- configuration ----------------------------------------------------------------------------

struct Config {
  bool quick = false;
  std::filesystem::path out;        // results: <out>/<scenario>.tsv
  std::filesystem::path work;       // private etcd data dirs; children's stderr (last run's)
  std::string candidate;            // path of bench-candidate
  std::string worker;               // path of leader-worker (the process-level handover)
  std::string etcdctl = "etcdctl";  // the Go client that ships with etcd
  int n = 0;                        // observers/participants, if not the mode's default
  int idle_seconds = 0;             // scale's idle window, if not the mode's default
};

// --- /proc ------------------------------------------------------------------------------------

struct ProcStatus {
  long rss_kib = -1;  // VmRSS
  long threads = -1;  // Threads
};
/// /proc/<pid>/status (pid 0: this process).
ProcStatus proc_status(pid_t pid = 0);

/// CPU time of a process (pid 0: this one), all its threads, user + system, in seconds: what
/// /proc/<pid>/stat counts as utime + stime, read from the process's CPU-time clock
/// (clock_getcpuclockid) with nanosecond rather than 10 ms resolution, which an idle etcdctl
/// needs. Falls back to /proc/<pid>/stat.
double proc_cpu_seconds(pid_t pid = 0);

/// Bytes the allocator has handed out and not got back (mallinfo2, all arenas).
std::size_t heap_in_use();

// --- child processes --------------------------------------------------------------------------

struct Line {
  std::string text;
  std::int64_t at_us = 0;  // when it was read from the pipe
};

/// A child process whose stdout is a pipe read here, line by line, with the time each line
/// arrived; stderr goes to a file. Destroying it SIGKILLs the child if it still runs and reaps
/// it. The child also gets SIGKILL if this process dies (PR_SET_PDEATHSIG), so no benchmark
/// leaves candidates behind.
///
/// etcdctl's lines are timed this way. Go does not buffer os.Stdout (each fmt.Println is one
/// write(2)), checked by reading `etcdctl elect`'s key line through a pipe while the process
/// still ran, so neither `stdbuf -oL` nor a pty is needed: a line arrives the moment etcdctl
/// prints it, plus microseconds of pipe. bench-candidate flushes each line itself.
class Child {
 public:
  Child(std::vector<std::string> argv, const std::filesystem::path& stderr_file);
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  pid_t pid() const { return pid_; }
  /// CLOCK_MONOTONIC just before fork().
  std::int64_t spawned_us() const { return spawned_us_; }
  const std::string& name() const { return name_; }

  void signal(int sig);
  bool exited();  // reaps without waiting
  /// Waits up to `limit` for the exit; SIGKILLs after that. Returns the exit status, or
  /// 128 + signal.
  int stop(std::chrono::milliseconds limit);

  /// The next complete line of stdout, waiting up to `limit`; nullopt on timeout or EOF.
  std::optional<Line> next_line(std::chrono::milliseconds limit);
  /// Waits for a line for which `match` holds, dropping others.
  std::optional<Line> wait_line(const std::function<bool(const std::string&)>& match,
                                std::chrono::milliseconds limit);

  /// A line already read, without waiting.
  std::optional<Line> take_line() {
    if (first_ >= lines_.size()) return std::nullopt;
    return lines_[first_++];
  }
  bool has_line() const { return first_ < lines_.size(); }
  bool eof() const { return eof_; }
  std::string stderr_tail() const;

  /// Reads what the pipes of `children` hold until `ready()` holds or `limit` passes, stamping
  /// each line with the time it was read. Returns ready().
  static bool pump(const std::vector<Child*>& children, const std::function<bool()>& ready,
                   std::chrono::milliseconds limit);

 private:
  void read_available(std::int64_t at);

  std::string name_;
  std::filesystem::path stderr_file_;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::int64_t spawned_us_ = 0;
  bool reaped_ = false;
  int status_ = -1;
  bool eof_ = false;
  std::string partial_;
  std::vector<Line> lines_;
  std::size_t first_ = 0;
};

/// The first whitespace-separated fields of a line.
std::vector<std::string> fields(const std::string& line);

// --- etcd -------------------------------------------------------------------------------------

/// A private one-member etcd in <work>/<name>-<pid>, stopped (and its directory removed) when
/// this object goes.
class Etcd {
 public:
  Etcd(const Config& config, const std::string& name);
  ~Etcd();
  const std::vector<std::string>& endpoints() const { return cluster_->endpoints(); }
  std::string endpoint() const { return cluster_->endpoint(0); }
  pid_t pid() const { return cluster_->pid(0); }

 private:
  std::filesystem::path dir_;
  std::optional<test::EtcdCluster> cluster_;
};

// --- the io thread ----------------------------------------------------------------------------

/// An io_context run by one thread, on which every library object lives: create, use and
/// destroy them inside coroutines given to sync(). The main thread meanwhile drives child
/// processes with blocking reads.
class IoThread {
 public:
  IoThread();
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;
  ~IoThread();

  asio::any_io_executor executor() { return io_.get_executor(); }

  /// Runs `a` on the io thread and waits for its result. The awaitable (and, when it comes from
  /// a lambda called in the argument, the lambda) lives until it has finished. After `limit` it
  /// is cancelled and std::runtime_error thrown.
  template <class T>
  T sync(asio::awaitable<T> a, std::chrono::milliseconds limit, const char* what) {
    asio::cancellation_signal stop;
    auto done = asio::co_spawn(io_, std::move(a),
                               asio::bind_cancellation_slot(stop.slot(), asio::use_future));
    if (done.wait_for(limit) == std::future_status::timeout) {
      asio::post(io_, [&stop] { stop.emit(asio::cancellation_type::terminal); });
      if (done.wait_for(std::chrono::seconds(10)) == std::future_status::timeout)
        fatal(std::string(what) + ": did not finish after its time limit and a cancellation");
      throw std::runtime_error(std::string(what) + ": timed out after " +
                               std::to_string(limit.count()) + " ms");
    }
    return done.get();
  }

  [[noreturn]] static void fatal(const std::string& message);

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
};

// --- etcd requests the benchmarks make themselves ----------------------------------------------

/// How many keys start with `prefix`.
asio::awaitable<std::int64_t> count_prefix(detail::ClientCore& core, std::string prefix);

/// Polls count_prefix until it reaches `n`.
asio::awaitable<void> wait_count(detail::ClientCore& core, std::string prefix, std::int64_t n,
                                 std::chrono::milliseconds limit,
                                 std::chrono::milliseconds step = 2ms);

/// One keep-alive of `lease` on a fresh stream; returns the time the request was sent.
asio::awaitable<std::int64_t> renew_lease(detail::ClientCore& core, std::int64_t lease);

/// Put and delete, returning the revision.
asio::awaitable<std::int64_t> put_key(detail::ClientCore& core, std::string key, std::string value);
asio::awaitable<std::int64_t> delete_key(detail::ClientCore& core, std::string key);

election::ClientOptions client_options(const std::vector<std::string>& endpoints);

/// A name for an election or key, unique in this run.
std::string unique(const std::string& prefix);

// --- the scenarios ----------------------------------------------------------------------------

int run_handover(const Config& config);
int run_lock(const Config& config);
int run_failover(const Config& config);
int run_fanout(const Config& config);
int run_scale(const Config& config);
int run_startup(const Config& config);
/// The shards scenario: runs `self shards-one` once per size and way of holding leases.
int run_shards(const Config& config, const std::string& self);
int run_shards_one(const Config& config, bool session_mode);
int run_report(const std::filesystem::path& out, const std::string& command,
               const std::string& mode);

}  // namespace election::bench
