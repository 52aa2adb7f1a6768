// The life of one lock-exec: Holder::run() connects, waits in line for the lock (leaving the
// queue on a stop signal), runs the command in a process group of its own while it holds the
// lock, passes signals on to the group, stops the group when the lock is lost (SIGTERM, then
// SIGKILL after --kill-after) or when the command's main process has exited leaving others
// running, releases the lock once no process of the group is left, and returns the exit code.
// Its --json events and one-line messages are written by Output. Definitions in holder.cpp.
// Everything runs on one io_context thread.
#pragma once

#include "child.hpp"
#include "config.hpp"

#include <election/client.hpp>
#include <election/mutex.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <csignal>
#include <optional>
#include <string>
#include <string_view>

namespace lock_exec {

/// The stop signals lock-exec takes, and passes on to the command's group while it runs:
/// SIGINT, SIGTERM, SIGQUIT, and SIGHUP unless this process started with it ignored (nohup:
/// the command inherits the ignore). The group is not the terminal's foreground group, so a
/// terminal's ^C, ^\ and hangup reach lock-exec alone. Call before anything changes their
/// actions.
sigset_t stop_signals();

/// Blocks or unblocks `stop` and SIGCHLD (the command's orphans), the signals lock-exec takes
/// on its io_context, in the calling thread (and in the threads it starts).
void set_handled_signals_blocked(const sigset_t& stop, bool blocked);

/// What lock-exec prints: with --json, one JSON object a line on stdout ({"event", "name",
/// "mono_us", then the event's fields}); failures and the lost message as one line on stderr,
/// always. Each line is written whole and flushed at once.
class Output {
 public:
  Output(std::string name, bool json) : name_(std::move(name)), json_(json) {}
  void emit(std::string_view event, const boost::json::object& fields = {});
  /// "lock-exec: `message`" on stderr (and an `error` event with --json).
  void fail(const std::string& message);
  /// "lock-exec: `message`" on stderr only.
  void say(const std::string& message);

 private:
  std::string name_;
  bool json_;
};

class Holder {
 public:
  /// `child_defaults`: the signals the command gets back at their default action; `stop`: the
  /// stop signals (stop_signals()).
  Holder(const Config& config, const sigset_t& child_defaults, const sigset_t& stop)
      : config_(config),
        child_defaults_(child_defaults),
        stop_(stop),
        out_(config.name, config.json) {}

  /// The whole life; returns the exit code.
  boost::asio::awaitable<int> run();
  Output& output() { return out_; }

 private:
  boost::asio::awaitable<election::LockKey> take(election::Client& client, election::Mutex& mutex);
  boost::asio::awaitable<int> hold(election::Mutex& mutex, const election::LockKey& key);
  boost::asio::awaitable<boost::system::error_code> watch(election::Mutex& mutex);
  boost::asio::awaitable<void> release(election::Mutex& mutex, bool quiet);
  void pass_signals_on();
  void reap_orphans();
  void stop_group(const std::optional<boost::system::error_code>& lost);

  const Config& config_;
  sigset_t child_defaults_;
  sigset_t stop_;
  Output out_;
  std::optional<boost::asio::signal_set> signals_;
  std::optional<boost::asio::signal_set> children_;  // SIGCHLD
  std::optional<boost::asio::steady_timer> kill_timer_;
  std::optional<Child> child_;
  bool reaping_ = true;          // until run() ends: SIGCHLD reaps the command's orphans
  bool stop_passed_on_ = false;  // a stop signal went on to the group
  bool stopping_ = false;        // lock-exec sent the group SIGTERM; the kill timer runs
};

}  // namespace lock_exec
