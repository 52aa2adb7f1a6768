// The definitions of child.hpp: posix_spawnp into a new process group with a clean signal
// state, the pidfd, the reaps, the group's signals and its end.
#include "child.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>

#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace lock_exec {
namespace {

std::string variable_name(const std::string& assignment) {
  return assignment.substr(0, assignment.find('='));
}

int open_pidfd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// How often wait_group() looks: a few ms is nothing beside the takeover delay (200 ms) that the
// whole stop, SIGKILL included, has to fit in, and one kill() and one waitid() a look cost
// nothing.
constexpr auto group_poll = std::chrono::milliseconds(5);

}  // namespace

Child::Child(const boost::asio::any_io_executor& executor, const std::vector<std::string>& command,
             const std::vector<std::string>& extra, const sigset_t& default_signals)
    : pidfd_(executor) {
  std::vector<std::string> replaced;
  for (const auto& e : extra) replaced.push_back(variable_name(e));
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string name = variable_name(*e);
    if (std::find(replaced.begin(), replaced.end(), name) == replaced.end()) env.push_back(*e);
  }
  for (const auto& e : extra) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  std::vector<char*> argv;
  for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  // The command's orphans (a shell's command whose shell was killed first, a pipeline's
  // stages) are reparented to lock-exec instead of init, so that they stay countable and
  // reapable: the group is not empty while one of them is a zombie. Harmless to repeat; were
  // it to fail (Linux before 3.4), they would go to init, and be reaped in init's own time.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);

  // lock-exec blocks the signals its signal_sets take in every thread: the child must start
  // with an empty mask, or it could never be stopped by them. Its own process group (pgid 0:
  // its pid) lets every signal reach all of it, however deep, with one kill(-pgid).
  posix_spawnattr_t attributes;
  ::posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  ::posix_spawnattr_setsigmask(&attributes, &none);
  ::posix_spawnattr_setsigdefault(&attributes, &default_signals);
  ::posix_spawnattr_setpgroup(&attributes, 0);
  ::posix_spawnattr_setflags(
      &attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  const int failed = ::posix_spawnp(&pid_, argv[0], nullptr, &attributes, argv.data(), env.data());
  ::posix_spawnattr_destroy(&attributes);
  if (failed != 0) {
    pid_ = -1;
    exited_ = true;
    group_gone_ = true;
    throw boost::system::system_error(failed, boost::system::system_category(), command[0]);
  }
  const int fd = open_pidfd(pid_);
  if (fd < 0) {
    const int error = errno;
    ::kill(-pid_, SIGKILL);
    reap();
    throw boost::system::system_error(error, boost::system::system_category(), "pidfd_open");
  }
  pidfd_.assign(fd);
}

Child::~Child() {
  // pid_ > 0 always here (a failed start throws from the constructor), but kill(-pid_) with
  // pid_ <= 0 would signal this process's own group or every process: never risk it.
  if (pid_ > 0 && group_alive()) ::kill(-pid_, SIGKILL);
  if (!exited_) reap();
}

void Child::signal(int signal) {
  if (pid_ <= 0 || !group_alive()) return;
  ::kill(-pid_, signal);
  if (signal != SIGKILL) ::kill(-pid_, SIGCONT);
}

bool Child::group_alive() {
  if (group_gone_ || pid_ <= 0) return false;
  reap_orphans();
  // ESRCH: no process has this group id, zombies included. EPERM (members this process may
  // not signal, a setuid program's) means some are left.
  if (::kill(-pid_, 0) < 0 && errno == ESRCH) group_gone_ = true;
  return !group_gone_;
}

void Child::reap_orphans() {
  for (;;) {
    siginfo_t info{};
    // Looked at, not reaped: the main process is wait()'s to reap, with its status.
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) return;
    // The main process, exited: the others behind it wait for wait(), which its pidfd wakes.
    if (info.si_pid == pid_) return;
    int status = 0;
    if (::waitpid(info.si_pid, &status, WNOHANG) != info.si_pid) return;
  }
}

boost::asio::awaitable<void> Child::wait_group() {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  while (group_alive()) {
    timer.expires_after(group_poll);
    co_await timer.async_wait(boost::asio::use_awaitable);
  }
}

boost::asio::awaitable<ExitStatus> Child::wait() {
  while (!exited_) {
    co_await pidfd_.async_wait(boost::asio::posix::descriptor_base::wait_read,
                               boost::asio::use_awaitable);
    // Readable: the process has exited (a zombie until reaped, so waitpid cannot block).
    reap();
  }
  co_return status_;
}

void Child::reap() {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  exited_ = true;
  if (r == pid_ && WIFSIGNALED(status)) {
    status_ = {128 + WTERMSIG(status), WTERMSIG(status)};
  } else if (r == pid_) {
    status_ = {WEXITSTATUS(status), 0};
  } else {
    status_ = {1, 0};  // not ours to reap (cannot happen: nobody else waits)
  }
}

}  // namespace lock_exec
