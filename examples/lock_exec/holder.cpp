// The definitions of holder.hpp: take the lock (racing a stop signal), hold it while the command
// runs (racing the loss of the lock) and until its whole process group is gone, release it, and
// the lines all that is reported in.
#include "holder.hpp"

#include "common/json_line.hpp"
#include "common/text.hpp"

#include <election/error.hpp>
#include <election/first_of.hpp>
#include <election/leadership.hpp>

#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <variant>
#include <vector>

namespace lock_exec {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using boost::system::system_error;
using election::errc;
using Fields = boost::json::object;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto connect_timeout = 3s;
// The release is a revocation, one round trip; past this lock-exec exits anyway and the lease
// expires after its TTL.
constexpr auto release_limit = 2s;

std::int64_t mono_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

void write(std::FILE* to, const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), to);
  std::fflush(to);
}

std::string signal_name(int signal) {
  if (const char* abbrev = ::sigabbrev_np(signal)) return std::string("SIG") + abbrev;
  return std::to_string(signal);
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

constexpr int stop_signal_numbers[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

asio::awaitable<int> next_signal(asio::signal_set& signals) {
  co_return co_await signals.async_wait(asio::use_awaitable);
}

asio::awaitable<void> sleep_for(Clock::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

}  // namespace

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (const int signal : stop_signal_numbers) {
    struct sigaction action {};
    if (signal == SIGHUP && ::sigaction(signal, nullptr, &action) == 0 &&
        action.sa_handler == SIG_IGN)
      continue;
    sigaddset(&set, signal);
  }
  return set;
}

void set_handled_signals_blocked(const sigset_t& stop, bool blocked) {
  sigset_t set = stop;
  sigaddset(&set, SIGCHLD);
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
}

void Output::emit(std::string_view event, const Fields& fields) {
  if (!json_) return;
  Fields all{{"event", event}, {"name", name_}, {"mono_us", mono_us()}};
  all.insert(fields.begin(), fields.end());
  write(stdout, example_common::json_line(std::move(all)) + "\n");
}

void Output::fail(const std::string& message) {
  emit("error", {{"message", example_common::one_line(message)}});
  say(message);
}

void Output::say(const std::string& message) {
  write(stderr, "lock-exec: " + example_common::one_line(message) + "\n");
}

asio::awaitable<int> Holder::run() {
  auto executor = co_await asio::this_coro::executor;
  election::ClientOptions options;
  options.endpoints = config_.endpoints;
  options.connect_timeout = connect_timeout;
  options.tls = config_.tls;
  options.user = config_.user;
  options.password = config_.password;
  election::MutexOptions lock_options;
  lock_options.ttl = std::chrono::seconds(config_.ttl);
  // Always set (the library's default is 0 on etcd versions with the stale-leader fix): the
  // bound between lock-exec holders, --kill-after < --takeover-delay, needs it.
  lock_options.takeover_delay = config_.takeover_delay;
  // Bad endpoints and lock names (ending in '/', say) are refused here, before anything is sent.
  std::optional<election::Client> client;
  std::optional<election::Mutex> mutex;
  try {
    client.emplace(executor, options);
    mutex.emplace(*client, config_.name, lock_options);
  } catch (const system_error& e) {
    out_.fail(example_common::describe(e));
    co_return exit_bad_input;
  }
  signals_.emplace(executor);
  for (const int signal : stop_signal_numbers)
    if (sigismember(&stop_, signal) == 1) signals_->add(signal);
  // Before the command starts: its handler also replaces a SIGCHLD ignored by whoever started
  // lock-exec, under which exited children are not kept for waitpid() and the command's exit
  // status would be lost.
  children_.emplace(executor, SIGCHLD);
  reap_orphans();
  kill_timer_.emplace(executor);
  // main() blocked these until now (gRPC's threads inherited the mask): a signal that came
  // during start-up was held, and is delivered to the signal_set here.
  set_handled_signals_blocked(stop_, false);

  int code = exit_failure;
  try {
    // A signal while connecting or waiting in line: a cancelled lock() leaves the queue.
    auto taken = co_await election::first_of(take(*client, *mutex), next_signal(*signals_));
    if (taken.index() == 1) {
      const int signal = std::get<1>(taken);
      out_.emit("signal", {{"signal", signal_name(signal)}});
      code = 128 + signal;
    } else {
      code = co_await hold(*mutex, std::get<0>(taken));
    }
  } catch (const system_error& e) {
    out_.fail(example_common::describe(e));
    code = exit_failure;
  }
  signals_->cancel();
  // A SIGCHLD that came with the cancel has its handler queued already, as a success: it must
  // not wait again, or the io_context would never run out of work.
  reaping_ = false;
  children_->cancel();
  kill_timer_->cancel();
  mutex.reset();
  client.reset();
  co_return code;
}

asio::awaitable<election::LockKey> Holder::take(election::Client& client, election::Mutex& mutex) {
  try {
    co_await client.connect();
  } catch (const system_error& e) {
    // Refused credentials or certificates: the library's message says which.
    if (e.code() == asio::error::operation_aborted || e.code() == errc::auth_failed ||
        e.code() == errc::tls_failed)
      throw;
    throw system_error(e.code(), "cannot reach etcd at " + join(config_.endpoints) + " within " +
                                     std::to_string(connect_timeout.count()) + " s");
  }
  co_return co_await mutex.lock();
}

asio::awaitable<int> Holder::hold(election::Mutex& mutex, const election::LockKey& key) {
  const auto fence = std::to_string(key.create_revision);
  out_.emit("locked", {{"key", key.key},
                       {"revision", key.create_revision},
                       {"lease", key.lease},
                       {"ttl", config_.ttl}});
  // As etcdctl lock sets them, except that ETCD_LOCK_REV is the fencing revision too (etcdctl's
  // is the revision of the response that granted the lock, at or after it).
  const std::vector<std::string> environment{"ETCD_LOCK_KEY=" + key.key, "ETCD_LOCK_REV=" + fence,
                                             "ETCD_LOCK_FENCE=" + fence};
  const auto executor = co_await asio::this_coro::executor;
  bool started = false;
  try {
    child_.emplace(executor, config_.command, environment, child_defaults_);
    started = true;
  } catch (const system_error& e) {
    out_.fail(config_.command.front() + ": " + e.code().message());
  }
  if (!started) {
    co_await release(mutex, false);
    co_return exit_cannot_run;
  }
  const auto& command = config_.command.front();
  const auto pgid = child_->pid();
  out_.emit("child-started", {{"pid", pgid}, {"pgid", pgid}, {"command", command}});
  pass_signals_on();

  // The main process's exit, raced against the end of the hold (the loser's wait is cancelled:
  // either wait changes nothing when cancelled).
  std::optional<error_code> lost;
  bool lost_after_exit = false;  // the main process had exited, others of its group had not
  ExitStatus status;
  auto first = co_await election::first_of(child_->wait(), watch(mutex));
  if (first.index() == 0) {
    status = std::get<0>(first);
  } else {
    lost = std::get<1>(first);
    stop_group(lost);
    status = co_await child_->wait();
  }
  Fields exited{{"pid", pgid}, {"code", status.code}};
  if (status.signal != 0) exited["signal"] = signal_name(status.signal);
  out_.emit("child-exited", exited);

  // The rest of the group: the main process's own children, orphans reparented to lock-exec, a
  // pipeline's other stages. The lock is released only once none of them is left.
  if (child_->group_alive()) {
    out_.emit("group-running", {{"pgid", pgid}});
    // The command is over, what it left behind is not: as systemd's KillMode=control-group,
    // SIGTERM and SIGKILL --kill-after later. Not after a passed-on signal: the group got it
    // already and stops at its own pace while the lock is held, as the main process did.
    if (!lost && !stop_passed_on_) stop_group({});
    if (!lost) {
      auto rest = co_await election::first_of(child_->wait_group(), watch(mutex));
      if (rest.index() == 1) {
        lost = std::get<1>(rest);
        lost_after_exit = true;
        stop_group(lost);
      }
    }
    if (lost) co_await child_->wait_group();
  }
  kill_timer_->cancel();
  signals_->cancel();
  out_.emit("group-exited", {{"pgid", pgid}});
  if (lost) {
    const std::string how = status.signal != 0 ? "ended by " + signal_name(status.signal)
                                               : "exit code " + std::to_string(status.code);
    out_.say("lost the lock " + config_.name + " (" + lost->message() + "); " +
             (lost_after_exit ? command + " had exited (" + how + "); stopped the rest of its group"
                              : "stopped " + command + " (" + how + ") and its group"));
  }
  // Only now, with no process of the command left. After a loss there may be nothing left to
  // release (the lease expired, the key deleted): then quietly.
  co_await release(mutex, lost.has_value());
  co_return lost ? exit_lost : status.code;
}

asio::awaitable<error_code> Holder::watch(election::Mutex& mutex) {
  try {
    co_return co_await mutex.wait_lost();
  } catch (const system_error& e) {
    if (e.code() == asio::error::operation_aborted) throw;
    co_return e.code();  // the hold cannot be watched: as good as lost
  }
}

asio::awaitable<void> Holder::release(election::Mutex& mutex, bool quiet) {
  try {
    auto released = co_await election::first_of(mutex.unlock(), sleep_for(release_limit));
    if (released.index() == 0) {
      out_.emit("unlocked");
      co_return;
    }
    if (!quiet)
      out_.fail("etcd did not confirm the release within " + std::to_string(release_limit.count()) +
                " s; the lease expires after its TTL");
  } catch (const system_error& e) {
    if (!quiet)
      out_.fail("release failed: " + example_common::describe(e) +
                "; the lease expires after its TTL");
  }
}

// Each stop signal that reaches lock-exec while the command's group runs goes on to the whole
// group (a terminal's ^C reaches lock-exec only: the group is not the terminal's foreground
// group); lock-exec itself waits for the group to be empty, then releases the lock.
void Holder::pass_signals_on() {
  signals_->async_wait([this](const error_code& ec, int signal) {
    if (ec || !child_ || !child_->group_alive()) return;
    stop_passed_on_ = true;
    child_->signal(signal);
    out_.emit("signal", {{"signal", signal_name(signal)}, {"pgid", child_->pid()}});
    pass_signals_on();
  });
}

// Orphans of the command are reparented to lock-exec (a child subreaper, see Child): each
// SIGCHLD reaps those that have exited, so that a long command's orphans do not pile up as
// zombies until it ends.
void Holder::reap_orphans() {
  children_->async_wait([this](const error_code& ec, int) {
    if (ec || !reaping_) return;
    if (child_) child_->reap_orphans();
    reap_orphans();
  });
}

// SIGTERM to the whole group now, SIGKILL --kill-after later unless it is empty by then; once
// (a later call finds the kill timer running already, to run out sooner). `lost`: the loss
// that asks for it, reported between the two. After a loss this is the bound: the group is
// SIGKILLed within --kill-after of lock-exec seeing the loss, and a next lock-exec holder waits
// its takeover delay after a removal nobody signed.
void Holder::stop_group(const std::optional<error_code>& lost) {
  // The signal at once: after a removal nobody signed the next holder's delay has begun.
  if (!stopping_) child_->signal(SIGTERM);
  if (lost)
    out_.emit("lost", {{"reason", election::reason_name(*lost)}, {"message", lost->message()}});
  if (stopping_) return;
  stopping_ = true;
  kill_timer_->expires_after(config_.kill_after);
  kill_timer_->async_wait([this](const error_code& ec) {
    if (ec || !child_->group_alive()) return;
    child_->signal(SIGKILL);
    out_.emit("killed", {{"pgid", child_->pid()}, {"signal", "SIGKILL"}});
  });
}

}  // namespace lock_exec
