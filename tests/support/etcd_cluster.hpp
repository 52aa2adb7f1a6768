// Private etcd servers for tests, driven through cmake/etcd-fixture.sh.
//
//   auto etcd = election::test::EtcdCluster::start("/tmp/x", 3);
//   etcd.endpoints();            // {"127.0.0.1:C1", ...}
//   { Frozen f(etcd.pid(0)); ... }  // member 1 is SIGSTOPped inside the block
//
// fixture_endpoints() instead reads the cluster a CTest fixture started: the
// file named by ELECTION_TEST_ENDPOINTS_FILE.
//
// The members die with this program, however it ends (an abort skips ~EtcdCluster): the script
// runs them under etcd-leash, owned by this process. The leash is the one the tests are built
// with (ELECTION_ETCD_LEASH), or the environment's ETCD_FIXTURE_LEASH, which an empty value
// turns off: `ETCD_FIXTURE_LEASH= ./test` leaves etcd running after a crash, as before.
#pragma once

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef ELECTION_ETCD_FIXTURE_SCRIPT
#define ELECTION_ETCD_FIXTURE_SCRIPT "cmake/etcd-fixture.sh"
#endif
#ifndef ELECTION_ETCD_LEASH
#define ELECTION_ETCD_LEASH ""  // no leash unless ETCD_FIXTURE_LEASH names one
#endif

namespace election::test {

namespace detail {

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("etcd fixture: cannot read " + path.string());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(0, s.find_first_not_of(ws));
  s.erase(s.find_last_not_of(ws) + 1);
  return s;
}

inline std::vector<std::string> split_endpoints(const std::string& text) {
  std::vector<std::string> result;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (item = trim(item); !item.empty()) result.push_back(item);
  }
  return result;
}

inline pid_t read_pid(const std::filesystem::path& file) {
  const std::string text = trim(read_file(file));
  char* end = nullptr;
  const long pid = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || pid <= 0)
    throw std::runtime_error("etcd fixture: bad pid file " + file.string());
  return static_cast<pid_t>(pid);
}

inline void send_signal(pid_t pid, int sig) {
  if (::kill(pid, sig) != 0)
    throw std::runtime_error("etcd fixture: kill(" + std::to_string(pid) + ", " +
                             std::to_string(sig) + "): " + std::strerror(errno));
}

inline std::string tail_lines(const std::string& text, int lines) {
  auto pos = text.size();
  while (pos > 0 && lines-- >= 0) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos == 0 ? 0 : pos + 1);
}

// execvp() is not async-signal-safe, so bash is looked up before fork().
inline std::string find_bash() {
  std::istringstream path(std::getenv("PATH") ? std::getenv("PATH") : "");
  for (std::string dir; std::getline(path, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/bash";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "/bin/bash";
}

// The etcd-leash the script runs members under, or "" for none.
inline std::string leash_path() {
  if (const char* env = std::getenv("ETCD_FIXTURE_LEASH")) return env;
  return ELECTION_ETCD_LEASH;
}

// The script's environment: ours, with the leash and this process as the members' owner (the
// script's parent would be too, but an inherited ETCD_FIXTURE_OWNER must not win).
inline std::vector<std::string> script_environment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view var(*e);
    if (var.starts_with("ETCD_FIXTURE_LEASH=") || var.starts_with("ETCD_FIXTURE_OWNER=")) continue;
    env.emplace_back(var);
  }
  env.push_back("ETCD_FIXTURE_LEASH=" + leash_path());
  env.push_back("ETCD_FIXTURE_OWNER=" + std::to_string(::getpid()));
  return env;
}

// The same two variables as shell assignments, for scripts run through a shell (which may not
// be the owner itself, e.g. etcd-security.sh under popen's sh).
inline std::string leash_shell_assignments() {
  std::string quoted = "'";
  for (const char c : leash_path()) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  return "ETCD_FIXTURE_LEASH=" + quoted + " ETCD_FIXTURE_OWNER=" + std::to_string(::getpid());
}

// Runs `bash SCRIPT args...`, stdout and stderr merged; throws with the output's
// tail when it fails. Everything is prepared before fork(): the test may have
// threads, so the child only calls async-signal-safe functions.
inline std::string run_script(const std::vector<std::string>& args) {
  const std::string bash = find_bash();
  std::vector<std::string> argv_store{"bash", ELECTION_ETCD_FIXTURE_SCRIPT};
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_store = script_environment();
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  std::string command;
  for (const auto& a : argv_store) command += (command.empty() ? "" : " ") + a;

  int fds[2];
  // O_CLOEXEC: only the script's stdout/stderr may hold the pipe, or a long-lived
  // etcd (or another thread's child) would keep it open and we would never see EOF.
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("etcd fixture: pipe2: ") + std::strerror(errno));
  const int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t child = ::fork();
  if (child < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    if (dev_null >= 0) ::close(dev_null);
    throw std::runtime_error(std::string("etcd fixture: fork: ") + std::strerror(err));
  }
  if (child == 0) {
    if (dev_null >= 0) ::dup2(dev_null, STDIN_FILENO);
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::execve(bash.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  if (dev_null >= 0) ::close(dev_null);

  std::string output;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) {
      output.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fds[0]);

  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR)
      throw std::runtime_error(std::string("etcd fixture: waitpid: ") + std::strerror(errno));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                              : "signal " + std::to_string(WTERMSIG(status));
    throw std::runtime_error("etcd fixture: `" + command + "` failed (" + how + "):\n" +
                             tail_lines(output, 30));
  }
  return output;
}

}  // namespace detail

// SIGSTOPs a process for the guard's lifetime, so that a failing test never
// leaves etcd stopped.
class Frozen {
 public:
  explicit Frozen(pid_t pid) : pid_(pid) { detail::send_signal(pid_, SIGSTOP); }
  Frozen(const Frozen&) = delete;
  Frozen& operator=(const Frozen&) = delete;
  Frozen(Frozen&& other) noexcept : pid_(std::exchange(other.pid_, 0)) {}
  Frozen& operator=(Frozen&&) = delete;
  ~Frozen() { thaw(); }

  // Continue the process before the guard goes out of scope.
  void thaw() noexcept {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
    pid_ = 0;
  }

 private:
  pid_t pid_;
};

// A private etcd cluster in its own directory; member indices are 0-based
// (member i is mi+1 in the script's files). Stopped by the destructor.
class EtcdCluster {
 public:
  static EtcdCluster start(std::filesystem::path dir, int members = 1) {
    if (members < 1) throw std::invalid_argument("etcd fixture: members must be >= 1");
    dir = std::filesystem::absolute(dir);
    detail::run_script({"start", dir.string(), std::to_string(members)});
    EtcdCluster cluster(std::move(dir), members);
    cluster.endpoints_ = detail::split_endpoints(detail::read_file(cluster.dir_ / "endpoints"));
    if (static_cast<int>(cluster.endpoints_.size()) != members)
      throw std::runtime_error("etcd fixture: unexpected endpoints file in " +
                               cluster.dir_.string());
    return cluster;
  }

  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;
  EtcdCluster(EtcdCluster&& other) noexcept
      : dir_(std::move(other.dir_)),
        members_(other.members_),
        endpoints_(std::move(other.endpoints_)),
        running_(std::exchange(other.running_, false)) {}
  EtcdCluster& operator=(EtcdCluster&& other) noexcept {
    if (this != &other) {
      shutdown_noexcept();
      dir_ = std::move(other.dir_);
      members_ = other.members_;
      endpoints_ = std::move(other.endpoints_);
      running_ = std::exchange(other.running_, false);
    }
    return *this;
  }
  ~EtcdCluster() { shutdown_noexcept(); }

  const std::vector<std::string>& endpoints() const { return endpoints_; }
  std::string endpoint(int i) const { return endpoints_.at(index(i)); }
  int members() const { return members_; }
  const std::filesystem::path& dir() const { return dir_; }

  // Read fresh each call: restarts change it. Throws if member i is not running.
  pid_t pid(int i) const { return detail::read_pid(dir_ / member_file(i, ".pid")); }

  void freeze(int i) { detail::send_signal(pid(i), SIGSTOP); }
  void thaw(int i) { detail::send_signal(pid(i), SIGCONT); }
  void kill_member(int i) { member_command("kill-member", i); }
  // Both wait until the member is healthy, which needs a quorum of the cluster.
  void start_member(int i) { member_command("start-member", i); }
  void restart_member(int i) { member_command("restart-member", i); }

  /// The index of the member that is raft leader now, as etcdctl reports it (-1 if none is).
  int raft_leader() const {
    for (int i = 0; i < members_; ++i) {
      const auto command = "ETCDCTL_API=3 etcdctl --command-timeout=2s --endpoints=" + endpoint(i) +
                           " endpoint status -w simple 2>/dev/null";
      std::FILE* out = ::popen(command.c_str(), "r");
      if (!out) continue;
      char line[512] = {};
      const bool got = std::fgets(line, sizeof line, out) != nullptr;
      ::pclose(out);
      // Columns: endpoint, id, version, db size, is leader, is learner, ...
      if (got && std::string(line).find(", true, false,") != std::string::npos) return i;
    }
    return -1;
  }

  /// If member i is raft leader, hands raft leadership to another member (etcdctl
  /// move-leader) and waits until it has. Throws if that fails.
  void move_leader_away_from(int i) const {
    if (raft_leader() != i) return;
    const std::string etcdctl =
        "ETCDCTL_API=3 etcdctl --command-timeout=3s --endpoints=" + endpoint(i);
    std::FILE* out = ::popen((etcdctl + " member list -w simple 2>/dev/null").c_str(), "r");
    if (!out) throw std::runtime_error("etcd fixture: member list failed");
    // Lines: id, started, name, peer URL, client URL, is learner
    std::string target;
    char line[512];
    while (std::fgets(line, sizeof line, out)) {
      const std::string text(line);
      if (target.empty() && text.find("http://" + endpoint(i) + ",") == std::string::npos)
        target = text.substr(0, text.find(','));
    }
    ::pclose(out);
    if (target.empty()) throw std::runtime_error("etcd fixture: no other member to lead");
    if (std::system((etcdctl + " move-leader " + target + " > /dev/null 2>&1").c_str()) != 0)
      throw std::runtime_error("etcd fixture: move-leader to " + target + " failed");
    for (int tries = 0; tries < 50 && raft_leader() == i; ++tries)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (raft_leader() == i) throw std::runtime_error("etcd fixture: member still raft leader");
  }

  void stop() {
    if (dir_.empty()) return;
    detail::run_script({"stop", dir_.string()});
    running_ = false;
  }

 private:
  EtcdCluster(std::filesystem::path dir, int members)
      : dir_(std::move(dir)), members_(members), running_(true) {}

  std::size_t index(int i) const {
    if (i < 0 || i >= members_)
      throw std::out_of_range("etcd fixture: no member " + std::to_string(i));
    return static_cast<std::size_t>(i);
  }
  std::string member_file(int i, const char* suffix) const {
    // Appended, not "m" + std::string: g++ 12 warns (-Wrestrict) on that inlined insert.
    std::string name = "m";
    name += std::to_string(index(i) + 1);
    name += suffix;
    return name;
  }
  void member_command(const char* what, int i) {
    detail::run_script({what, dir_.string(), std::to_string(index(i) + 1)});
  }
  void shutdown_noexcept() noexcept {
    if (!running_) return;
    try {
      stop();
    } catch (...) {
    }
    running_ = false;
  }

  std::filesystem::path dir_;
  int members_ = 0;
  std::vector<std::string> endpoints_;
  bool running_ = false;
};

// The cluster of the shared CTest fixture.
inline std::filesystem::path fixture_endpoints_file() {
  const char* file = std::getenv("ELECTION_TEST_ENDPOINTS_FILE");
  if (file == nullptr || *file == '\0')
    throw std::runtime_error(
        "ELECTION_TEST_ENDPOINTS_FILE is not set: run this test through ctest, whose "
        "fixture starts etcd (or point it at an `endpoints` file of etcd-fixture.sh)");
  if (!std::filesystem::exists(file))
    throw std::runtime_error(std::string("ELECTION_TEST_ENDPOINTS_FILE=") + file +
                             " does not exist: did the etcd fixture start?");
  return file;
}

inline std::vector<std::string> fixture_endpoints() {
  const auto file = fixture_endpoints_file();
  auto endpoints = detail::split_endpoints(detail::read_file(file));
  if (endpoints.empty()) throw std::runtime_error("no endpoints in " + file.string());
  return endpoints;
}

inline std::filesystem::path fixture_dir() {
  return std::filesystem::absolute(fixture_endpoints_file()).parent_path();
}

inline pid_t fixture_pid(int i = 0) {
  return detail::read_pid(fixture_dir() / ("m" + std::to_string(i + 1) + ".pid"));
}

}  // namespace election::test
