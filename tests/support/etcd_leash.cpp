// etcd-leash: runs a command (the tests' etcd) that dies with the process that owns it.
//
//   etcd-leash --owner PID --pid-file FILE -- COMMAND [ARG...]
//
// cmake/etcd-fixture.sh runs each member under it when ETCD_FIXTURE_LEASH names it, with the
// script's caller as owner, so a test program that aborts (or is SIGKILLed) leaves no etcd behind.
//
// etcd-leash returns once COMMAND has been exec'd (/proc/PID/cmdline shows its argv) and FILE
// holds COMMAND's own pid (written by rename, so never half a pid): signals sent by that pid
// (SIGSTOP, SIGCONT, SIGKILL) reach COMMAND itself, and a check of the pid's argv, like the
// fixture script's is_our_etcd, finds COMMAND. Behind it stays a watcher, in a session of its
// own, whose child COMMAND is:
//   - when the owner exits, however it ends, the watcher SIGKILLs COMMAND and exits;
//   - when the watcher dies, the kernel SIGKILLs COMMAND (PR_SET_PDEATHSIG);
//   - when COMMAND exits, the watcher reaps it at once and exits with its status (128 + signal).
// The owner is watched through a pidfd (pidfd_open, poll): no polling interval, no pid reuse.
//
// Exit status (of the call that returns): 0 started; 1 the owner is gone (nothing is started) or
// FILE cannot be written; 2 usage; 127 COMMAND cannot be executed. Uses no network.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // the same number on every architecture
#endif

namespace {

constexpr const char* self_name = "etcd-leash";

void complain(const std::string& what) { std::fprintf(stderr, "%s: %s\n", self_name, what.c_str()); }

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

[[noreturn]] void usage(const std::string& why) {
  complain(why);
  std::fprintf(stderr, "usage: %s --owner PID --pid-file FILE -- COMMAND [ARG...]\n", self_name);
  std::exit(2);
}

// glibc 2.36 has a wrapper, older ones do not: the system call works with both.
int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// A pidfd is readable once its process has exited (a zombie counts).
bool has_exited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  int n;
  while ((n = ::poll(&p, 1, 0)) < 0 && errno == EINTR) {
  }
  return n > 0;
}

bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Written beside FILE, then renamed over it: a reader sees no pid or the whole pid. The
// temporary name does not end in ".pid", so the script's m*.pid never matches it.
bool write_pid_file(const std::string& file, pid_t pid) {
  const std::string tmp = file + ".leash-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    complain(errno_text("cannot write " + tmp));
    return false;
  }
  const std::string text = std::to_string(pid) + "\n";
  const bool written = write_all(fd, text.data(), text.size());
  if (::close(fd) != 0 || !written || ::rename(tmp.c_str(), file.c_str()) != 0) {
    complain(errno_text("cannot write " + file));
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

// The close-on-exec pipe reaches EOF while the kernel is still setting the new program up, a
// moment before /proc/PID/cmdline shows its argv: until then the script's is_our_etcd would
// reject the pid. Waits (up to 10 s, in 1 ms steps) until argv[0] is COMMAND's; false if the
// child exits first, e.g. before its exec.
bool wait_for_command_line(pid_t child, int child_fd, const char* argv0) {
  const std::string path = "/proc/" + std::to_string(child) + "/cmdline";
  const std::string want = std::string(argv0) + '\0';
  for (int attempt = 0; attempt < 10000; ++attempt) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      char buf[4096];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) < 0 && errno == EINTR) {
      }
      ::close(fd);
      if (n >= static_cast<ssize_t>(want.size()) && std::string(buf, want.size()) == want) return true;
    }
    pollfd p{child_fd, POLLIN, 0};
    if (::poll(&p, 1, 1) > 0) return false;
  }
  return false;
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

int reap(pid_t child) {
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return 1;
  }
  return exit_code(status);
}

struct Options {
  pid_t owner = 0;
  std::string pid_file;
  std::vector<char*> command;  // null-terminated
};

Options parse(int argc, char** argv) {
  Options o;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc) usage("missing value for " + arg);
    const std::string value = argv[++i];
    if (arg == "--owner") {
      char* end = nullptr;
      errno = 0;
      const long pid = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || errno != 0 || pid <= 0 || pid != static_cast<pid_t>(pid))
        usage("bad owner pid '" + value + "'");
      o.owner = static_cast<pid_t>(pid);
    } else if (arg == "--pid-file") {
      o.pid_file = value;
    } else {
      usage("unknown option " + arg);
    }
  }
  if (o.owner == 0) usage("--owner is required");
  if (o.pid_file.empty()) usage("--pid-file is required");
  if (i >= argc) usage("no command after --");
  for (; i < argc; ++i) o.command.push_back(argv[i]);
  o.command.push_back(nullptr);
  return o;
}

// The watcher: starts COMMAND, reports through `ready` once FILE holds its pid, then waits for
// the owner or COMMAND to end. Never returns.
[[noreturn]] void watch(const Options& o, int owner_fd, int ready) {
  ::setsid();  // like `setsid etcd` without the leash: no signal to the caller's group reaches it
  std::signal(SIGPIPE, SIG_IGN);  // the caller may be gone when we report: keep watching anyway
  const pid_t watcher = ::getpid();

  // Close-on-exec: it reaches EOF when the exec succeeds, or carries the exec's errno.
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    complain(errno_text("pipe2"));
    std::_Exit(1);
  }
  const pid_t child = ::fork();
  if (child < 0) {
    complain(errno_text("fork"));
    std::_Exit(1);
  }
  if (child == 0) {
    // Our parent is single-threaded, so anything goes here; keep it short anyway. If the watcher
    // died before prctl(), getppid() has changed and no one would kill us: do not start.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != watcher) ::_exit(127);
    std::signal(SIGPIPE, SIG_DFL);  // an ignored signal stays ignored across exec
    ::close(exec_pipe[0]);
    ::execvp(o.command[0], o.command.data());
    const int err = errno;
    write_all(exec_pipe[1], reinterpret_cast<const char*>(&err), sizeof err);
    ::_exit(127);
  }
  ::close(exec_pipe[1]);
  int err = 0;
  ssize_t n;
  while ((n = ::read(exec_pipe[0], &err, sizeof err)) < 0 && errno == EINTR) {
  }
  ::close(exec_pipe[0]);
  if (n > 0) {
    errno = err;
    complain(errno_text(std::string("cannot execute ") + o.command[0]));
    reap(child);
    std::_Exit(127);
  }

  // Our unreaped child: its pid cannot be reused, so this pidfd and kill() are safe.
  const int child_fd = pidfd_open(child);
  if (child_fd < 0) {
    complain(errno_text("pidfd_open(command)"));
    ::kill(child, SIGKILL);
    reap(child);
    std::_Exit(1);
  }
  if (!wait_for_command_line(child, child_fd, o.command[0])) {
    // It never showed COMMAND's argv: it died before exec (or after), or is stuck in exec.
    ::kill(child, SIGKILL);
    const int code = reap(child);
    complain(std::string(o.command[0]) + " did not start (status " + std::to_string(code) + ")");
    std::_Exit(code == 0 ? 1 : code);
  }
  if (!write_pid_file(o.pid_file, child)) {
    ::kill(child, SIGKILL);
    reap(child);
    std::_Exit(1);
  }
  write_all(ready, "1", 1);
  ::close(ready);

  pollfd fds[2] = {{owner_fd, POLLIN, 0}, {child_fd, POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      complain(errno_text("poll"));
      ::kill(child, SIGKILL);  // a leash that cannot watch its owner lets go of nothing
      reap(child);
      std::_Exit(1);
    }
    if (fds[0].revents != 0 && fds[1].revents == 0) {
      ::kill(child, SIGKILL);
      reap(child);
      std::_Exit(0);
    }
    if (fds[1].revents != 0) std::_Exit(reap(child));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);

  const int owner_fd = pidfd_open(o.owner);
  if (owner_fd < 0) {
    if (errno == ESRCH) {
      complain("owner " + std::to_string(o.owner) + " is gone: not starting " + o.command[0]);
    } else {
      complain(errno_text("pidfd_open(owner " + std::to_string(o.owner) + ")"));
    }
    return 1;
  }
  if (has_exited(owner_fd)) {
    complain("owner " + std::to_string(o.owner) + " has exited: not starting " + o.command[0]);
    return 1;
  }

  // The watcher writes one byte once COMMAND runs and FILE holds its pid; EOF means it failed.
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    complain(errno_text("pipe2"));
    return 1;
  }
  std::fflush(nullptr);
  const pid_t watcher = ::fork();
  if (watcher < 0) {
    complain(errno_text("fork"));
    return 1;
  }
  if (watcher == 0) {
    ::close(ready[0]);
    watch(o, owner_fd, ready[1]);
  }
  ::close(ready[1]);
  char byte = 0;
  ssize_t n;
  while ((n = ::read(ready[0], &byte, 1)) < 0 && errno == EINTR) {
  }
  if (n == 1) return 0;
  // The watcher has said why; its status tells 127 (cannot execute) from the rest.
  int status = 0;
  while (::waitpid(watcher, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 127 ? 127 : 1;
}
