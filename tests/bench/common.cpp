#include "common.hpp"

#include "transport/kv.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

namespace election::bench {

// --- time -------------------------------------------------------------------------------------

std::int64_t now_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

asio::awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

// --- statistics -------------------------------------------------------------------------------

double Samples::percentile(double p) const {
  if (values_.empty()) return nan;
  auto sorted = values_;
  std::sort(sorted.begin(), sorted.end());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

double Samples::max() const {
  return values_.empty() ? nan : *std::max_element(values_.begin(), values_.end());
}

double Samples::min() const {
  return values_.empty() ? nan : *std::min_element(values_.begin(), values_.end());
}

double Samples::mean() const {
  return values_.empty() ? nan
                         : std::accumulate(values_.begin(), values_.end(), 0.0) /
                               static_cast<double>(values_.size());
}

// --- results ----------------------------------------------------------------------------------

double Row::ratio() const {
  if (std::isnan(ours) || std::isnan(baseline) || baseline == 0) return nan;
  return ours / baseline;
}

std::string format_value(double v, const std::string& unit) {
  if (std::isnan(v)) return "-";
  char buf[64];
  if (unit == "ms") {
    const double a = std::fabs(v);
    std::snprintf(buf, sizeof buf, a < 10 ? "%.2f ms" : a < 100 ? "%.1f ms" : "%.0f ms", v);
  } else if (unit == "%") {
    std::snprintf(buf, sizeof buf, "%.2f %%", v);
  } else if (unit == "KiB") {
    std::snprintf(buf, sizeof buf, v < 100 ? "%.1f KiB" : "%.0f KiB", v);
  } else if (unit == "threads") {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g %s", v, unit.c_str());
  }
  return buf;
}

namespace {

std::string clean(std::string s) {
  for (auto& c : s)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return s;
}

std::string number(double v) {
  if (std::isnan(v)) return "nan";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string pad(std::string s, std::size_t width) {
  // Pads by code points, so "->" and "≤" line up alike.
  std::size_t points = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++points;
  if (points < width) s.append(width - points, ' ');
  return s;
}

}  // namespace

void Results::print() const {
  std::cout << "\n== " << scenario_ << " ==\n";
  std::cout << pad("figure", 44) << pad("ours", 12) << pad("baseline", 40) << pad("value", 12)
            << pad("ratio", 8) << pad("target", 22) << "met\n";
  for (const auto& r : rows_) {
    char ratio[32] = "-";
    if (!std::isnan(r.ratio()))
      std::snprintf(ratio, sizeof ratio, r.ratio() < 0.1 ? "%.2g" : "%.2f", r.ratio());
    std::cout << pad(r.figure, 44) << pad(format_value(r.ours, r.unit), 12)
              << pad(r.baseline_name.empty() ? "-" : r.baseline_name, 40)
              << pad(format_value(r.baseline, r.unit), 12) << pad(ratio, 8)
              << pad(r.target.empty() ? "-" : r.target, 22)
              << (r.met < 0 ? "-"
                  : r.met   ? "yes"
                            : "NO")
              << '\n';
    if (!r.note.empty()) std::cout << "    " << r.note << '\n';
  }
  std::cout.flush();
}

void Results::write(const std::filesystem::path& out_dir) const {
  std::filesystem::create_directories(out_dir);
  const auto path = out_dir / (scenario_ + ".tsv");
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path.string());
  for (const auto& r : rows_) {
    out << clean(r.figure) << '\t' << clean(r.unit) << '\t' << number(r.ours) << '\t'
        << clean(r.baseline_name) << '\t' << number(r.baseline) << '\t' << clean(r.target) << '\t'
        << r.met << '\t' << r.samples << '\t' << clean(r.note) << '\n';
  }
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// --- /proc ------------------------------------------------------------------------------------

namespace {
std::string proc_path(pid_t pid, const char* file) {
  return pid == 0 ? std::string("/proc/self/") + file : "/proc/" + std::to_string(pid) + "/" + file;
}
}  // namespace

ProcStatus proc_status(pid_t pid) {
  ProcStatus s;
  std::ifstream in(proc_path(pid, "status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kib = std::stol(line.substr(6));
    if (line.rfind("Threads:", 0) == 0) s.threads = std::stol(line.substr(8));
  }
  return s;
}

double proc_cpu_seconds(pid_t pid) {
  clockid_t clock = CLOCK_PROCESS_CPUTIME_ID;
  if (pid == 0 || ::clock_getcpuclockid(pid, &clock) == 0) {
    timespec ts{};
    if (::clock_gettime(clock, &ts) == 0)
      return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  }
  std::ifstream in(proc_path(pid, "stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) return nan;
  std::istringstream rest(text.substr(close + 2));
  std::vector<std::string> f;
  for (std::string x; rest >> x;) f.push_back(x);
  // After "(comm)": field 3 (state) is f[0]; utime is field 14, stime field 15.
  if (f.size() < 13) return nan;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return (std::stod(f[11]) + std::stod(f[12])) / ticks;
}

std::size_t heap_in_use() {
  const auto m = ::mallinfo2();
  return m.uordblks + m.hblkhd;
}

// --- emergency clean-up -----------------------------------------------------------------------

namespace {
std::mutex registry_mutex;
std::set<pid_t> live_children;
std::set<std::string> live_etcd_dirs;
}  // namespace

void IoThread::fatal(const std::string& message) {
  std::cerr << "election-bench: fatal: " << message << std::endl;
  std::lock_guard lock(registry_mutex);
  for (auto pid : live_children) ::kill(pid, SIGKILL);
  for (const auto& dir : live_etcd_dirs) {
    try {
      test::detail::run_script({"stop", dir});
    } catch (...) {
    }
  }
  std::_Exit(3);
}

// --- child processes --------------------------------------------------------------------------

namespace {

std::string find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const auto candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  throw std::runtime_error("not found in PATH: " + name);
}

}  // namespace

Child::Child(std::vector<std::string> argv, const std::filesystem::path& stderr_file)
    : stderr_file_(stderr_file) {
  if (argv.empty()) throw std::invalid_argument("Child: empty argv");
  name_ = std::filesystem::path(argv[0]).filename().string();
  // Everything the child needs is prepared before fork(): this process has threads (gRPC's
  // and the io thread), so the child may only make async-signal-safe calls.
  const std::string exe = find_executable(argv[0]);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  const int err = ::open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  spawned_us_ = now_us();
  pid_ = ::fork();
  if (pid_ < 0) {
    const int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    if (err >= 0) ::close(err);
    if (null >= 0) ::close(null);
    throw std::runtime_error(std::string("fork: ") + std::strerror(e));
  }
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    if (null >= 0) ::dup2(null, STDIN_FILENO);
    ::dup2(fds[1], STDOUT_FILENO);
    if (err >= 0) ::dup2(err, STDERR_FILENO);
    ::execve(exe.c_str(), args.data(), environ);
    ::_exit(127);
  }
  ::close(fds[1]);
  if (err >= 0) ::close(err);
  if (null >= 0) ::close(null);
  fd_ = fds[0];
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  std::lock_guard lock(registry_mutex);
  live_children.insert(pid_);
}

Child::~Child() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  if (fd_ >= 0) ::close(fd_);
  std::lock_guard lock(registry_mutex);
  live_children.erase(pid_);
}

void Child::signal(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

bool Child::exited() {
  if (reaped_) return true;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped_ = true;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return reaped_;
}

int Child::stop(std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!exited() && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    status_ = 128 + SIGKILL;
  }
  std::lock_guard lock(registry_mutex);
  live_children.erase(pid_);
  return status_;
}

void Child::read_available(std::int64_t at) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n > 0) {
      partial_.append(buf, static_cast<std::size_t>(n));
      for (auto nl = partial_.find('\n'); nl != std::string::npos; nl = partial_.find('\n')) {
        lines_.push_back(Line{partial_.substr(0, nl), at});
        partial_.erase(0, nl + 1);
      }
      continue;
    }
    if (n == 0) {
      eof_ = true;
      return;
    }
    if (errno == EINTR) continue;
    return;  // EAGAIN
  }
}

bool Child::pump(const std::vector<Child*>& children, const std::function<bool()>& ready,
                 std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!ready()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    std::vector<pollfd> fds;
    std::vector<Child*> polled;
    for (auto* c : children) {
      if (c->eof_) continue;
      fds.push_back(pollfd{c->fd_, POLLIN, 0});
      polled.push_back(c);
    }
    if (fds.empty()) return ready();
    const int n =
        ::poll(fds.data(), fds.size(), static_cast<int>(std::min<long>(left.count(), 100)));
    if (n < 0 && errno != EINTR)
      throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
    if (n <= 0) continue;
    const auto at = now_us();
    for (std::size_t i = 0; i < fds.size(); ++i)
      if (fds[i].revents != 0) polled[i]->read_available(at);
  }
  return true;
}

std::optional<Line> Child::next_line(std::chrono::milliseconds limit) {
  pump(
      {this}, [this] { return first_ < lines_.size() || eof_; }, limit);
  if (first_ >= lines_.size()) return std::nullopt;
  return lines_[first_++];
}

std::optional<Line> Child::wait_line(const std::function<bool(const std::string&)>& match,
                                     std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() < 0) return std::nullopt;
    auto line = next_line(left);
    if (!line) return std::nullopt;
    if (match(line->text)) return line;
  }
}

std::string Child::stderr_tail() const {
  std::ifstream in(stderr_file_);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.size() > 2000 ? text.substr(text.size() - 2000) : text;
}

std::vector<std::string> fields(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

// --- etcd -------------------------------------------------------------------------------------

Etcd::Etcd(const Config& config, const std::string& name)
    : dir_(config.work / (name + "-" + std::to_string(::getpid()))) {
  std::filesystem::create_directories(config.work);
  {
    std::lock_guard lock(registry_mutex);
    live_etcd_dirs.insert(std::filesystem::absolute(dir_).string());
  }
  cluster_.emplace(test::EtcdCluster::start(dir_, 1));
}

Etcd::~Etcd() {
  cluster_.reset();
  {
    std::lock_guard lock(registry_mutex);
    live_etcd_dirs.erase(std::filesystem::absolute(dir_).string());
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

// --- the io thread ----------------------------------------------------------------------------

IoThread::IoThread() : guard_(io_.get_executor()), thread_([this] { io_.run(); }) {}

IoThread::~IoThread() {
  guard_.reset();
  // Everything the scenarios made has gone by now; what is left (a gRPC completion being
  // posted) drains within moments.
  for (int i = 0; i < 500 && !io_.stopped(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  io_.stop();
  thread_.join();
}

// --- etcd requests ----------------------------------------------------------------------------

asio::awaitable<std::int64_t> count_prefix(detail::ClientCore& core, std::string prefix) {
  etcdserverpb::RangeRequest request;
  request.set_range_end(detail::prefix_end(prefix));
  request.set_key(std::move(prefix));
  request.set_count_only(true);
  auto reply = co_await core.call("count", core.kv().async(), &etcdserverpb::KV::Stub::async::Range,
                                  std::move(request));
  co_return reply.count();
}

asio::awaitable<void> wait_count(detail::ClientCore& core, std::string prefix, std::int64_t n,
                                 std::chrono::milliseconds limit, std::chrono::milliseconds step) {
  const auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const auto count = co_await count_prefix(core, prefix);
    if (count >= n) co_return;
    if (std::chrono::steady_clock::now() >= end)
      throw std::runtime_error("timed out waiting for " + std::to_string(n) + " keys under " +
                               prefix + " (have " + std::to_string(count) + ")");
    co_await sleep_for(step);
  }
}

asio::awaitable<std::int64_t> renew_lease(detail::ClientCore& core, std::int64_t lease) {
  auto bind = [&core](auto* ctx, auto* reactor) {
    core.lease().async()->LeaseKeepAlive(ctx, reactor);
  };
  auto stream = detail::start_bidi_stream<etcdserverpb::LeaseKeepAliveRequest,
                                          etcdserverpb::LeaseKeepAliveResponse>(
      core.tracker(), core.executor(), core.stream_context(), bind);
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease);
  const auto sent = now_us();
  if (!stream.write(std::move(request))) throw std::runtime_error("renew: stream ended");
  auto reply = co_await stream.async_read(asio::use_awaitable);
  if (!reply) throw std::runtime_error("renew: stream ended: " + stream.status().error_message());
  if (reply->ttl() <= 0)
    throw std::runtime_error("renew: lease " + std::to_string(lease) + " is gone");
  co_return sent;
}

asio::awaitable<std::int64_t> put_key(detail::ClientCore& core, std::string key,
                                      std::string value) {
  etcdserverpb::PutRequest request;
  request.set_key(std::move(key));
  request.set_value(std::move(value));
  auto reply = co_await core.call("put", core.kv().async(), &etcdserverpb::KV::Stub::async::Put,
                                  std::move(request));
  co_return reply.header().revision();
}

asio::awaitable<std::int64_t> delete_key(detail::ClientCore& core, std::string key) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(std::move(key));
  auto reply = co_await core.call("delete", core.kv().async(),
                                  &etcdserverpb::KV::Stub::async::DeleteRange, std::move(request));
  co_return reply.header().revision();
}

election::ClientOptions client_options(const std::vector<std::string>& endpoints) {
  election::ClientOptions options;
  options.endpoints = endpoints;
  return options;
}

std::string unique(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return "bench/" + prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

}  // namespace election::bench
