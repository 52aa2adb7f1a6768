// The command lock-exec runs: started with posix_spawnp in a process group of its own (its
// signal mask emptied, the stop signals back at their default action), its main process watched
// through a pidfd on the io_context and reaped when it exits, every signal sent to the whole
// group. The lock may be released only once no process of the group is left, so lock-exec is
// made a child subreaper: the command's orphans are reparented to it, and reaped by
// reap_orphans() (zombies still count as members of their group until reaped).
//
// No pid is signalled after it may have been reused: the main process is reaped only once its
// pidfd is readable and through wait(); the group's id stays reserved while any member of the
// group, zombie or not, is left, and the group is no longer signalled once it was seen empty.
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
  /// Starts `command` (looked up in PATH) in a new process group (its id the main process's
  /// pid), with the environment of this process plus `extra` ("NAME=VALUE", replacing variables
  /// of the same name). `default_signals` are set back to their default action in the child.
  /// Makes this process a child subreaper first. Throws boost::system::system_error when it
  /// cannot be started (its code the errno: ENOENT for a command not found).
  Child(const boost::asio::any_io_executor& executor, const std::vector<std::string>& command,
        const std::vector<std::string>& extra, const sigset_t& default_signals);
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  /// SIGKILLs a group with processes left and reaps the main process (lock-exec never leaves
  /// one behind; what is left of the group is not waited for here).
  ~Child();

  /// The main process's pid, and the group's id.
  pid_t pid() const { return pid_; }
  /// Whether the main process has not been reaped yet.
  bool running() const { return !exited_; }
  /// Sends `signal` to every process of the group, unless none is left. Every signal but
  /// SIGKILL is followed by SIGCONT, as systemd does: a stopped process (a read from the
  /// terminal stops a background group with SIGTTIN) acts on it only once continued.
  void signal(int signal);
  /// Whether any process of the group is left, zombies included; the orphans among them are
  /// reaped first. Once false, false for good.
  bool group_alive();
  /// Reaps every exited child of this process but the main process (whose status wait()
  /// reads): the command's orphans. Never blocks.
  void reap_orphans();
  /// Completes when the main process has exited (at once if it has), with how. Cancellation:
  /// any type.
  boost::asio::awaitable<ExitStatus> wait();
  /// Completes when no process of the group is left. It polls (every few ms, reaping orphans):
  /// the death of a grandchild whose parent lives is signalled to that parent only.
  /// Cancellation: any type.
  boost::asio::awaitable<void> wait_group();

 private:
  void reap();

  pid_t pid_ = -1;
  bool exited_ = false;
  bool group_gone_ = false;
  ExitStatus status_;
  boost::asio::posix::stream_descriptor pidfd_;
};

}  // namespace lock_exec
