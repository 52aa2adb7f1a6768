// leader-worker: one node of a pool in which only the leader works.
//
// It campaigns in an etcd election. While it leads it works: once a second it writes a counter
// through a fenced write, which etcd applies only while this node's leader key still exists.
// When the leadership ends, the work is cancelled, and has stopped, before the node says "lost";
// then it campaigns again. Meanwhile it prints every leader change it observes. On SIGINT or
// SIGTERM it stops the work, resigns and revokes its lease (the next candidate takes over in
// milliseconds), and exits 0.
//
// One io_context, one thread: every coroutine here runs on it, so none of them needs a lock.
#include "json_line.hpp"

#include <election/election.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <unistd.h>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using boost::system::system_error;
using election::errc;
using leader_worker::JsonLine;
using Clock = std::chrono::steady_clock;

constexpr auto connect_timeout = 3s;
// Resign and revoke are two round trips to etcd; past this the process exits anyway and the
// lease expires after its TTL instead.
constexpr auto resign_limit = 800ms;

struct Config {
  std::string node;
  std::string host = "127.0.0.1";
  int port = 2379;
  std::vector<std::string> endpoints;  // filled from --endpoints, or from --host and --port
  std::string election = "leader-worker";
  std::int64_t ttl = 10;
  std::optional<std::int64_t> takeover_delay_ms;  // unset: chosen from etcd's version
  bool json = false;
  election::TlsOptions tls;  // --cacert, --cert, --key
  std::string user;          // --user name[:password]
  std::string password;      // from --password-file, $LEADER_WORKER_PASSWORD, --user or
                             // --password; never printed
};

// Delays that double from `initial` up to `cap`, each drawn from [d/2, d], so that workers that
// failed together do not retry in lock-step.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds cap)
      : initial_(initial), cap_(cap), current_(initial), random_(std::random_device{}()) {}
  std::chrono::milliseconds next() {
    const auto ceiling = current_;
    current_ = std::min(cap_, current_ * 2);
    return std::chrono::milliseconds(
        std::uniform_int_distribution<std::int64_t>(ceiling.count() / 2, ceiling.count())(random_));
  }
  void reset() { current_ = initial_; }

 private:
  std::chrono::milliseconds initial_, cap_, current_;
  std::minstd_rand random_;
};

std::int64_t micros(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// A lease deadline (lease_clock: boot time, which counts suspended time) on CLOCK_MONOTONIC,
// the clock of every other time this program prints. The two differ by the time suspended.
Clock::time_point on_monotonic(election::lease_clock::time_point t) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(t - election::lease_clock::now());
}

void set_stop_signals_blocked(bool blocked) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

// Short, stable names for why a leadership ended: what scripts match on.
std::string reason_name(const error_code& reason) {
  if (reason == errc::resigned) return "resigned";
  if (reason == errc::lease_expired) return "lease-expired";
  if (reason == errc::lease_revoked) return "lease-revoked";
  if (reason == errc::key_deleted) return "key-deleted";
  if (reason == errc::lease_deadline_passed) return "deadline-passed";
  if (reason == errc::client_closed) return "client-closed";
  return reason.category().name() + std::string(":") + std::to_string(reason.value());
}

// A failure no retry cures: refused credentials, no permission, bad input, the client gone.
// What passes by itself (election::is_transient) and what merely ends a leadership are retried.
bool needs_a_person(const error_code& ec) {
  return !election::is_transient(ec) && !election::ends_leadership(ec) &&
         ec != asio::error::operation_aborted;
}

std::string one_line(std::string text) {
  for (auto& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text;
}

// Boost's system_error::what() ends in " [category:value]" (and a source location): noise on a
// line meant for people, so it goes.
std::string describe(const system_error& e) {
  std::string text = e.what();
  const auto tag = " [" + std::string(e.code().category().name()) + ":";
  if (const auto at = text.rfind(tag); at != std::string::npos && text.back() == ']')
    text.erase(at);
  return text;
}

// What the worker prints. Each line is written whole and flushed at once: the output is read
// while the process runs, and a SIGKILL must not lose what was already said.
class Events {
 public:
  Events(std::string node, bool json) : node_(std::move(node)), json_(json) {}

  /// `fields` follow event, node and mono_us in the JSON line; `text` is the readable line.
  void emit(std::string_view event, const JsonLine& fields, std::string_view text) {
    const auto now = Clock::now();
    std::string line;
    if (json_) {
      JsonLine head;
      head.string("event", event).string("node", node_).number("mono_us", micros(now));
      line = head.append(fields).str();
    } else {
      line = wall_clock() + "  " + node_ + "  " + one_line(std::string(text));
    }
    line += '\n';
    write(stdout, line);
  }

  void error(const std::string& message) {
    emit("error", JsonLine().string("message", one_line(message)), "error: " + message);
  }

  /// The one line on stderr for a failure that ends the process (and an `error` event for a
  /// reader of the JSON lines).
  void fatal(const std::string& message) {
    if (json_) error(message);
    write(stderr, "leader-worker: " + one_line(message) + "\n");
  }

 private:
  static void write(std::FILE* to, const std::string& line) {
    std::fwrite(line.data(), 1, line.size(), to);
    std::fflush(to);
  }

  static std::string wall_clock() {
    const auto now = std::chrono::system_clock::now();
    const auto seconds = std::chrono::system_clock::to_time_t(now);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
        1000;
    std::tm local{};
    ::localtime_r(&seconds, &local);
    char out[32];
    std::snprintf(out, sizeof out, "%02d:%02d:%02d.%03d", local.tm_hour, local.tm_min, local.tm_sec,
                  static_cast<int>(millis));
    return out;
  }

  std::string node_;
  bool json_;
};

class Worker {
 public:
  Worker(const Config& config, Events& events)
      : config_(config), events_(events), counter_key_(config.election + "-counter") {}

  /// The whole life of the node; returns the exit code.
  asio::awaitable<int> run() {
    auto executor = co_await asio::this_coro::executor;
    election::ClientOptions options;
    options.endpoints = config_.endpoints;
    options.connect_timeout = connect_timeout;
    options.tls = config_.tls;
    options.user = config_.user;
    options.password = config_.password;
    // Where the long-lived streams are, and when one moves off a member that stopped answering.
    options.on_event = [this](const election::ClientEvent& e) { stream_event(e); };
    election::ParticipantOptions participant_options;
    participant_options.ttl = std::chrono::seconds(config_.ttl);
    if (config_.takeover_delay_ms)
      participant_options.takeover_delay = std::chrono::milliseconds(*config_.takeover_delay_ms);
    // Bad endpoints and election names are refused here, before anything is sent.
    std::optional<election::Client> client;
    std::optional<election::Participant> participant;
    try {
      client.emplace(executor, options);
      participant.emplace(*client, config_.election, config_.node, participant_options);
    } catch (const system_error& e) {
      events_.fatal(describe(e));
      co_return 2;
    }
    client_ = &*client;
    participant_ = &*participant;

    asio::signal_set signals(executor, SIGINT, SIGTERM);
    // main() blocked these until now: a signal that came during start-up was held, and is
    // delivered to the signal_set here instead of killing the process.
    set_stop_signals_blocked(false);
    int code = 0;
    try {
      auto stopped =
          co_await election::first_of(signals.async_wait(asio::use_awaitable), lifecycle());
      (void)stopped;  // a signal: the lifecycle never ends on its own without an error
    } catch (const system_error& e) {
      events_.fatal(describe(e));
      code = 1;
    }
    // A second signal during the clean-up ends the process at once.
    signals.async_wait([](const error_code& ec, int) {
      if (ec) return;
      static constexpr char message[] = "leader-worker: second signal: exiting at once\n";
      (void)!::write(STDERR_FILENO, message, sizeof message - 1);
      std::_Exit(1);
    });
    const int left = co_await leave();
    signals.cancel();
    participant.reset();
    client.reset();
    co_return code != 0 ? code : left;
  }

 private:
  // Connects, then campaigns and observes until an error (or a cancellation) stops it.
  asio::awaitable<void> lifecycle() {
    try {
      co_await client_->connect();
    } catch (const system_error& e) {
      // Refused credentials or certificates: the library's message says which, "cannot reach"
      // would mislead.
      if (e.code() == asio::error::operation_aborted || e.code() == errc::auth_failed ||
          e.code() == errc::tls_failed)
        throw;
      throw system_error(e.code(), "cannot reach etcd at " + join(config_.endpoints) + " within " +
                                       std::to_string(connect_timeout.count()) + " s");
    }
    co_await report_takeover_delay();
    co_await election::first_of(elect_loop(), observe_loop());
  }

  void stream_event(const election::ClientEvent& e) {
    using Kind = election::ClientEvent::Kind;
    const char* kind = e.kind == Kind::watch_stream        ? "watch"
                       : e.kind == Kind::watch_stalled     ? "watch-stalled"
                       : e.kind == Kind::keep_alive_stream ? "keep-alive"
                                                           : "keep-alive-hedged";
    const char* text = e.kind == Kind::watch_stream        ? "the election watch answers from "
                       : e.kind == Kind::watch_stalled     ? "the election watch fell silent on "
                       : e.kind == Kind::keep_alive_stream ? "the keep-alive answers from "
                                                           : "renewals went unanswered on ";
    events_.emit("stream", JsonLine().string("kind", kind).string("peer", e.peer),
                 std::string(text) + (e.peer.empty() ? "an unknown member" : e.peer));
  }

  // Says which takeover delay the campaigns use, and why: the flag, or etcd's version.
  asio::awaitable<void> report_takeover_delay() {
    const auto version = co_await client_->server_version();
    const bool from_flag = config_.takeover_delay_ms.has_value();
    const auto delay = from_flag ? std::chrono::milliseconds(*config_.takeover_delay_ms)
                                 : election::default_takeover_delay(version);
    const std::string shown = version.empty() ? std::string("unknown") : version;
    std::string why =
        from_flag ? "set by --takeover-delay"
        : delay.count() > 0
            ? "the default for an etcd without the fix for stale-leader lease "
              "revocation (before 3.4.31 and 3.5.13)"
            : "the default for an etcd with the fix for stale-leader lease revocation";
    events_.emit("etcd",
                 JsonLine()
                     .string("version", shown)
                     .number("takeover_delay_ms", delay.count())
                     .string("takeover_delay_from", from_flag ? "flag" : "etcd-version"),
                 "etcd " + shown + ": takeover delay " + std::to_string(delay.count()) + " ms (" +
                     why + ")");
  }

  asio::awaitable<void> elect_loop() {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer pause(executor);
    Backoff backoff(100ms, 1s);  // back in line soon after an outage
    for (;;) {
      campaigned_ = true;
      std::optional<election::LeaderKey> won;
      std::string failure;
      try {
        // The lease first, so its id and granted TTL can be told before waiting in line.
        const auto lease = co_await participant_->acquire_lease();
        const auto ttl = participant_->granted_ttl().count();
        events_.emit("campaigning",
                     JsonLine().string("lease", election::lease_hex(lease)).number("ttl", ttl),
                     "campaigning in '" + config_.election + "' with lease " +
                         election::lease_hex(lease) + " (TTL " + std::to_string(ttl) + " s)");
        won = co_await participant_->campaign();
      } catch (const system_error& e) {
        if (e.code() == asio::error::operation_aborted || needs_a_person(e.code())) throw;
        failure = describe(e);
      }
      if (!won) {
        const auto delay = backoff.next();
        events_.error("campaign failed: " + failure + "; campaigning again in " +
                      std::to_string(delay.count()) + " ms");
        pause.expires_after(delay);
        co_await pause.async_wait(asio::use_awaitable);
        continue;
      }
      backoff.reset();
      co_await lead(*won);
    }
  }

  // One term: work until the leadership ends, then say why.
  asio::awaitable<void> lead(election::LeaderKey key) {
    const auto granted = participant_->granted_ttl().count();
    events_.emit("elected",
                 JsonLine()
                     .string("key", key.key)
                     .number("rev", key.create_revision)
                     .string("lease", election::lease_hex(key.lease))
                     .number("ttl", granted),
                 "elected: leads with key " + key.key + " (revision " +
                     std::to_string(key.create_revision) + ", lease " +
                     election::lease_hex(key.lease) + ", TTL " + std::to_string(granted) + " s)");
    std::variant<std::monostate, error_code> ended;
    try {
      // first_of cancels the work when keep_alive() says the leadership is over, and waits
      // for it to stop: nothing is written after "lost" is printed.
      ended = co_await election::first_of(work_loop(key), participant_->keep_alive());
    } catch (const system_error& e) {
      const bool stopping = e.code() == asio::error::operation_aborted;
      const auto reason = stopping ? std::string("shutdown") : reason_name(e.code());
      events_.emit("lost", JsonLine().string("reason", reason).number("rev", key.create_revision),
                   "lost the leadership: " +
                       (stopping ? std::string("shutting down, work stopped") : describe(e)));
      throw;
    }
    const error_code reason = ended.index() == 1 ? std::get<1>(ended) : error_code(errc::resigned);
    JsonLine fields;
    fields.string("reason", reason_name(reason)).number("rev", key.create_revision);
    std::string text = "lost the leadership: " + reason.message();
    if (reason == errc::lease_deadline_passed) {
      if (const auto deadline = participant_->deadline()) {
        fields.number("deadline_us", micros(on_monotonic(*deadline)));
        text += " (the local deadline passed " +
                std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   election::lease_clock::now() - *deadline)
                                   .count()) +
                " ms ago)";
      }
    }
    events_.emit("lost", fields, text + "; work stopped");
  }

  // Ticks once a second, the first time at once; each tick writes the counter through the
  // fenced write. Never returns: the term's end cancels it.
  asio::awaitable<void> work_loop(election::LeaderKey key) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer tick(executor);
    asio::steady_timer limit(executor);
    auto next = Clock::now();
    for (;;) {
      tick.expires_at(next);
      co_await tick.async_wait(asio::use_awaitable);
      next = std::max(next + 1s, Clock::now());
      // Past the local deadline the term is over even if keep_alive() has not said so yet.
      const auto deadline = participant_->deadline();
      if (!participant_->is_leader() || !deadline) continue;

      const auto seq = ++seq_;
      // The value names its writer and the fence it is written under, so etcd's history alone
      // says who wrote what under which leadership.
      const auto value = JsonLine()
                             .string("node", config_.node)
                             .number("seq", seq)
                             .number("fence", key.create_revision)
                             .str();
      std::int64_t revision = 0;
      std::string failure;
      // An answer after the deadline would come from a node that no longer counts as leader:
      // such a write is given up on (etcd may still have applied it, fenced: before the end).
      limit.expires_at(on_monotonic(*deadline));
      try {
        auto written = co_await election::first_of(participant_->put_if_leader(counter_key_, value),
                                                   limit.async_wait(asio::use_awaitable));
        if (written.index() == 0)
          revision = std::get<0>(written);
        else
          failure = "no answer before the lease's local deadline";
      } catch (const system_error& e) {
        if (e.code() == asio::error::operation_aborted) throw;
        failure = e.code() == errc::not_leader ? "etcd refused the fenced write: not the leader"
                                               : describe(e);
      }
      JsonLine fields;
      fields.number("rev", revision).number("seq", seq).boolean("ok", failure.empty());
      fields.number("fence", key.create_revision);
      if (!failure.empty()) fields.string("error", failure);
      events_.emit("work", fields,
                   failure.empty() ? "work: wrote " + counter_key_ + " = " + value + " (revision " +
                                         std::to_string(revision) + ")"
                                   : "work: write " + std::to_string(seq) + " failed: " + failure);
    }
  }

  // Prints every leader change. The observer rides out what passes by itself (etcd away, no
  // raft leader) inside; what cannot get better (a closed client, refused credentials, no
  // permission) ends the process.
  asio::awaitable<void> observe_loop() {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer pause(executor);
    Backoff backoff(500ms, 5s);
    election::Observer observer = participant_->observe();
    for (;;) {
      std::optional<election::LeaderEvent> next;
      std::string failure;
      try {
        next = co_await observer.next();
      } catch (const system_error& e) {
        if (e.code() == asio::error::operation_aborted || needs_a_person(e.code())) throw;
        failure = describe(e);
      }
      if (!next) {
        const auto delay = backoff.next();
        events_.error("observing failed: " + failure + "; trying again in " +
                      std::to_string(delay.count()) + " ms");
        pause.expires_after(delay);
        co_await pause.async_wait(asio::use_awaitable);
        continue;
      }
      backoff.reset();
      const auto& change = *next;
      if (change.leader) {
        const auto& leader = *change.leader;
        events_.emit("leader",
                     JsonLine()
                         .string("value", leader.value)
                         .string("key", leader.key)
                         .number("rev", leader.create_revision),
                     "observed: the leader is " + leader.value + " (key " + leader.key +
                         ", revision " + std::to_string(leader.create_revision) + ")");
      } else {
        events_.emit("no-leader", JsonLine(), "observed: the election has no leader");
      }
    }
  }

  // Resigns (which also revokes the lease) with fresh deadlines, bounded in time.
  asio::awaitable<int> leave() {
    if (!campaigned_) co_return 0;
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer limit(executor, resign_limit);
    std::string failure;
    try {
      auto done = co_await election::first_of(participant_->resign(),
                                              limit.async_wait(asio::use_awaitable));
      if (done.index() == 1)
        failure = "resign did not finish within " + std::to_string(resign_limit.count()) + " ms";
    } catch (const system_error& e) {
      failure = std::string("resign failed: ") + describe(e);
    }
    if (!failure.empty()) {
      events_.fatal(failure + "; the lease expires after its TTL");
      co_return 1;
    }
    events_.emit("resigned", JsonLine(), "resigned: leader key deleted, lease revoked");
    co_return 0;
  }

  const Config& config_;
  Events& events_;
  std::string counter_key_;
  election::Client* client_ = nullptr;
  election::Participant* participant_ = nullptr;
  bool campaigned_ = false;
  std::int64_t seq_ = 0;
};

// Where --user NAME finds its password when no flag gives it: the environment is readable only
// by this user (and root), unlike the command line.
constexpr const char* password_variable = "LEADER_WORKER_PASSWORD";

// Returns an exit code when the process should end now (--help, bad input).
std::optional<int> parse_command_line(int argc, char** argv, Config& config) {
  CLI::App app{
      "leader-worker: one node of a pool in which only the elected leader works.\n"
      "It campaigns in an etcd v3 election; while it leads it writes a counter once a second\n"
      "through a fenced write (etcd applies it only while this node's leader key exists);\n"
      "when the leadership ends the work stops, and the node campaigns again. It prints\n"
      "every leader change it observes. SIGINT/SIGTERM: stop the work, resign, revoke the\n"
      "lease, exit 0.",
      "leader-worker"};
  app.footer(
      "Output: readable lines, or with --json one JSON object a line:\n"
      "  {\"event\": E, \"node\": NAME, \"mono_us\": T, ...}  T: CLOCK_MONOTONIC in us.\n"
      "  etcd (version, takeover_delay_ms, takeover_delay_from: flag | etcd-version)\n"
      "  stream (kind: watch | watch-stalled | keep-alive | keep-alive-hedged, peer)\n"
      "  campaigning (lease, ttl)   elected (key, rev, lease, ttl)   work (rev, seq, ok, fence)\n"
      "  lost (reason, rev; deadline_us if the reason is deadline-passed)   resigned\n"
      "  leader (value, key, rev)   no-leader   error (message)\n"
      "A node acts as leader from `elected` until its next `lost` or `resigned`, or until the\n"
      "`deadline_us` of that `lost`, whichever is earlier.\n"
      "Exit: 0 after SIGINT/SIGTERM, 1 on a runtime failure (etcd unreachable, resign failed),\n"
      "2 on bad input.\n"
      "Credentials: prefer --user NAME with --password-file FILE or $LEADER_WORKER_PASSWORD;\n"
      "a password on the command line is visible to every local user in /proc/PID/cmdline.");
  std::vector<std::string> endpoints;
  app.add_option("--node", config.node, "This node's name: the value it campaigns with")
      ->required()
      ->check(CLI::Validator(
          [](std::string& value) {
            return value.empty() ? std::string("must not be empty") : std::string();
          },
          "NAME"));
  auto* host =
      app.add_option("--host", config.host, "etcd host (with --port)")->capture_default_str();
  auto* port = app.add_option("--port", config.port, "etcd client port (with --host)")
                   ->check(CLI::Range(1, 65535))
                   ->capture_default_str();
  app.add_option("--endpoints", endpoints,
                 "etcd members as host:port,host:port,... instead of --host/--port; "
                 "https://host:port for TLS")
      ->delimiter(',')
      ->excludes(host)
      ->excludes(port);
  app.add_option("--election", config.election, "The election's name (its key prefix in etcd)")
      ->capture_default_str();
  app.add_option("--ttl", config.ttl,
                 "Lease TTL in s: how soon another node takes over if this one dies")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{9'000'000'000}))
      ->capture_default_str();
  app.add_option("--takeover-delay", config.takeover_delay_ms,
                 "ms to wait after winning before working, so a leader whose key was removed "
                 "early (etcd before the fix for stale-leader lease revocation) has stopped; "
                 "default: 200 on etcd before 3.4.31 and 3.5.13, 0 after (printed at start)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{60'000}));
  app.add_flag("--json", config.json, "Print one JSON object a line (see below)");
  // As etcdctl names them. Values are not echoed in errors: --user may hold a password.
  app.add_option("--cacert", config.tls.ca_file,
                 "CA bundle (PEM) to verify etcd's TLS certificate with; implies TLS");
  app.add_option("--cert", config.tls.cert_file, "Client certificate (PEM) for mutual TLS");
  app.add_option("--key", config.tls.key_file, "Private key (PEM) of --cert");
  std::string user;
  app.add_option("--user", user,
                 "etcd user: NAME, with the password from --password-file or $" +
                     std::string(password_variable) +
                     " (preferred), or NAME:PASSWORD (seen by every local user in "
                     "/proc/PID/cmdline)");
  std::string password_file;
  auto* file = app.add_option("--password-file", password_file,
                              "File holding the password of --user NAME (its first line); the "
                              "way to prefer, with the file readable by this user only");
  auto* password = app.add_option("--password", config.password,
                                  "Password of --user NAME, on the command line (visible in "
                                  "/proc/PID/cmdline: prefer --password-file)")
                       ->excludes(file);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help: the text on stdout, exit 0
    std::fprintf(stderr, "leader-worker: %s (see --help)\n", one_line(e.what()).c_str());
    return 2;
  }
  if (!endpoints.empty()) {
    for (const auto& e : endpoints) {
      if (e.empty()) {
        std::fprintf(stderr, "leader-worker: --endpoints: empty member in the list\n");
        return 2;
      }
    }
    config.endpoints = std::move(endpoints);
  } else {
    const bool ipv6 = config.host.find(':') != std::string::npos && config.host.front() != '[';
    config.endpoints = {(ipv6 ? "[" + config.host + "]" : config.host) + ":" +
                        std::to_string(config.port)};
  }
  if (config.tls.cert_file.empty() != config.tls.key_file.empty()) {
    std::fprintf(stderr, "leader-worker: --cert and --key go together\n");
    return 2;
  }
  const auto colon = user.find(':');
  const char* from_environment = std::getenv(password_variable);
  const bool in_environment = from_environment != nullptr && *from_environment != '\0';
  const bool given_apart = password->count() > 0 || file->count() > 0;
  if (colon != std::string::npos && given_apart) {
    std::fprintf(stderr,
                 "leader-worker: --password or --password-file given, so --user must be NAME "
                 "only\n");
    return 2;
  }
  if (user.empty() && given_apart) {
    std::fprintf(stderr, "leader-worker: --password and --password-file need --user\n");
    return 2;
  }
  if (file->count() > 0) {
    // The file's first line; the message names the file, never its content.
    std::ifstream in(password_file);
    if (!in || !std::getline(in, config.password)) {
      std::fprintf(stderr, "leader-worker: --password-file %s: cannot read a line from it\n",
                   password_file.c_str());
      return 2;
    }
    if (!config.password.empty() && config.password.back() == '\r') config.password.pop_back();
    if (config.password.empty()) {
      std::fprintf(stderr, "leader-worker: --password-file %s: the first line is empty\n",
                   password_file.c_str());
      return 2;
    }
  } else if (!user.empty() && colon == std::string::npos && password->count() == 0) {
    if (!in_environment) {
      std::fprintf(stderr,
                   "leader-worker: --user NAME needs a password: --password-file FILE or $%s "
                   "(preferred), --user NAME:PASSWORD or --password\n",
                   password_variable);
      return 2;
    }
    config.password = from_environment;
  }
  if (colon != std::string::npos) {
    config.password = user.substr(colon + 1);
    user.erase(colon);
    if (user.empty()) {
      std::fprintf(stderr, "leader-worker: --user: empty user name\n");
      return 2;
    }
  }
  config.user = std::move(user);
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists (gRPC's inherit the mask, so they never take these signals).
  set_stop_signals_blocked(true);
  Config config;
  if (const auto code = parse_command_line(argc, argv, config)) return *code;

  Events events(config.node, config.json);
  Worker worker(config, events);
  asio::io_context context(1);
  int code = 1;
  asio::co_spawn(context, worker.run(), [&](std::exception_ptr failure, int result) {
    code = result;
    if (!failure) return;
    code = 1;
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      events.fatal(e.what());
    }
  });
  context.run();
  return code;
}
