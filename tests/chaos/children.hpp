// The chaos runner's child processes: fork/exec without blocking the event loop, reaped by a
// poller. Shared with the proxy's test, which checks what a child must not inherit.
#pragma once

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace chaos {

namespace fs = std::filesystem;

inline std::int64_t steady_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// In a forked child before exec: close every descriptor above stderr. Asio opens the proxies'
// sockets without close-on-exec, and a child holding one (a worker, or an etcd a fixture script
// starts) keeps that connection open after the proxy closes it: the worker at its other end
// then sees a silent connection until its HTTP/2 ping times out, instead of a closed one.
inline void close_inherited_descriptors() {
  if (::close_range(3, ~0U, 0) == 0) return;
  const long most = ::sysconf(_SC_OPEN_MAX);
  for (int fd = 3; fd < (most > 0 ? most : 65536); ++fd) ::close(fd);
}

/// Children started by fork/exec and reaped by one poller, so the event loop never blocks.
class Children {
 public:
  /// `out`: stdout and (with ".err" appended) stderr; empty: both to /dev/null.
  pid_t spawn(std::vector<std::string> argv, const fs::path& out, bool die_with_us) {
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const std::string out_name = out.empty() ? "/dev/null" : out.string();
    const std::string err_name = out.empty() ? "/dev/null" : out.string() + ".err";
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      if (die_with_us) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
      }
      const int in = ::open("/dev/null", O_RDONLY);
      const int fd = ::open(out_name.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int efd = ::open(err_name.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(in, 0);
      ::dup2(fd, 1);
      ::dup2(efd, 2);
      close_inherited_descriptors();
      // The runner blocks nothing, but be explicit: a child starts with default signals.
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    running_.push_back(pid);
    return pid;
  }

  void reap() {
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      running_.erase(std::remove(running_.begin(), running_.end(), pid), running_.end());
      exits_[pid] = {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), steady_now_us()};
    }
  }

  struct Exit {
    int code;
    std::int64_t at_us;
  };
  std::optional<Exit> exit_of(pid_t pid) const {
    const auto it = exits_.find(pid);
    if (it == exits_.end()) return std::nullopt;
    return it->second;
  }

  /// SIGKILLs and reaps whatever still runs (the fixture script's etcd is stopped separately).
  void kill_all() {
    for (const pid_t pid : running_) {
      ::kill(pid, SIGCONT);
      ::kill(pid, SIGKILL);
    }
    for (const pid_t pid : std::vector<pid_t>(running_)) {
      int status = 0;
      if (::waitpid(pid, &status, 0) == pid)
        exits_[pid] = {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), steady_now_us()};
    }
    running_.clear();
  }

 private:
  std::vector<pid_t> running_;
  std::map<pid_t, Exit> exits_;
};

}  // namespace chaos
