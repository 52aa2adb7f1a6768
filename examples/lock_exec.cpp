// lock-exec: `lock-exec [flags] NAME -- CMD [ARGS...]` runs CMD while holding the etcd lock
// NAME, as `etcdctl lock NAME CMD...` does, with one difference that matters: when the lock is
// lost while CMD runs (the lease expired or was revoked, the key deleted, or the lease's local
// deadline passed without a renewal), CMD is stopped at once (SIGTERM, then SIGKILL after
// --kill-after) and lock-exec exits 3, instead of CMD running on, unprotected.
//
// CMD runs in a process group of its own: every signal lock-exec sends reaches all of it, and
// the lock is released only once no process of the group is left (lock-exec is the subreaper
// of CMD's orphans). The lock is an election::Mutex: one queue with etcdctl lock and etcd's Go
// Mutex. CMD gets ETCD_LOCK_KEY, ETCD_LOCK_REV and ETCD_LOCK_FENCE (the key's create revision:
// the fencing token). lock-exec exits with CMD's exit code (128 + N for a signal N) after
// releasing the lock. SIGINT, SIGTERM, SIGHUP and SIGQUIT go on to CMD's group (they reach
// lock-exec alone: CMD's group is not a terminal's foreground group); before the lock is taken
// they end the wait (128 + N).
//
// This file is the story: the flags, the life, the exit code. The parts, in lock_exec/: config
// (the flags, into a Config), holder (take, hold, release; the output), child (the command's
// process group: posix_spawnp, a pidfd, the reaps). The credentials and the JSON lines are
// leader-worker's, in common/. One io_context, one thread.
#include "lock_exec/config.hpp"
#include "lock_exec/holder.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <csignal>
#include <exception>

int main(int argc, char** argv) {
  namespace asio = boost::asio;
  using namespace lock_exec;
  // What CMD gets back at its default action: the stop signals (taken by lock-exec's
  // signal_set: SIGHUP only if lock-exec was not started with it ignored, as by nohup), and
  // SIGPIPE unless lock-exec itself was started with it ignored (gRPC may ignore it in this
  // process; the command should see it as a shell would give it).
  const sigset_t stop = stop_signals();
  sigset_t child_defaults = stop;
  struct sigaction pipe_action {};
  if (::sigaction(SIGPIPE, nullptr, &pipe_action) == 0 && pipe_action.sa_handler != SIG_IGN)
    sigaddset(&child_defaults, SIGPIPE);
  // Before any thread exists (gRPC's inherit the mask, so they never take these signals).
  set_handled_signals_blocked(stop, true);
  Config config;
  if (const auto code = parse_command_line(argc, argv, config)) return *code;

  // The context outlives the Holder: its signal set, timer and the command's pidfd are I/O
  // objects of this context and must be destroyed while it exists.
  asio::io_context context(1);
  Holder holder(config, child_defaults, stop);
  int code = exit_failure;
  asio::co_spawn(context, holder.run(), [&](std::exception_ptr failure, int result) {
    code = result;
    if (!failure) return;
    code = exit_failure;
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      holder.output().fail(e.what());
    }
  });
  context.run();
  return code;
}
