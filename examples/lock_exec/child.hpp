// The command lock-exec runs: started with posix_spawnp (its signal mask emptied, the stop
// signals back at their default action), watched through a pidfd on the io_context, reaped
// when it exits. No SIGCHLD handler: the pidfd becomes readable when the process exits, and
// only then is it waited for, so the pid cannot be reused while this object can signal it.
// Definitions in child.cpp.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <string>
#include <vector>

#include <sys/types.h>

namespace lock_exec {

/// How a process ended, as a shell reports it.
struct ExitStatus {
  int code = 0;    // the exit code, or 128 + the signal
  int signal = 0;  // the signal that ended it, or 0
};

class Child {
 public:
  /// Starts `command` (looked up in PATH) with the environment of this process plus `extra`
  /// ("NAME=VALUE", replacing variables of the same name). `default_signals` are set back to
  /// their default action in the child. Throws boost::system::system_error when it cannot be
  /// started (its code the errno: ENOENT for a command not found).
  Child(const boost::asio::any_io_executor& executor, const std::vector<std::string>& command,
        const std::vector<std::string>& extra, const sigset_t& default_signals);
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  /// SIGKILLs and reaps a child still running (lock-exec never leaves one behind).
  ~Child();

  pid_t pid() const { return pid_; }
  bool running() const { return !exited_; }
  /// Sends `signal` unless the child has been reaped.
  void signal(int signal);
  /// Completes when the child has exited (at once if it has), with how. Cancellation: any type.
  boost::asio::awaitable<ExitStatus> wait();

 private:
  void reap();

  pid_t pid_ = -1;
  bool exited_ = false;
  ExitStatus status_;
  boost::asio::posix::stream_descriptor pidfd_;
};

}  // namespace lock_exec
