// The definitions of child.hpp: posix_spawnp with a clean signal state, the pidfd, the reap.
#include "child.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include <spawn.h>
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

  // lock-exec blocks SIGINT and SIGTERM in every thread (its signal_set takes them): the child
  // must start with an empty mask, or it could never be stopped by them.
  posix_spawnattr_t attributes;
  ::posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  ::posix_spawnattr_setsigmask(&attributes, &none);
  ::posix_spawnattr_setsigdefault(&attributes, &default_signals);
  ::posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  const int failed = ::posix_spawnp(&pid_, argv[0], nullptr, &attributes, argv.data(), env.data());
  ::posix_spawnattr_destroy(&attributes);
  if (failed != 0) {
    pid_ = -1;
    exited_ = true;
    throw boost::system::system_error(failed, boost::system::system_category(), command[0]);
  }
  const int fd = open_pidfd(pid_);
  if (fd < 0) {
    const int error = errno;
    ::kill(pid_, SIGKILL);
    reap();
    throw boost::system::system_error(error, boost::system::system_category(), "pidfd_open");
  }
  pidfd_.assign(fd);
}

Child::~Child() {
  if (!exited_) {
    ::kill(pid_, SIGKILL);
    reap();
  }
}

void Child::signal(int signal) {
  if (!exited_) ::kill(pid_, signal);
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
