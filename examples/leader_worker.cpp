// leader-worker: one node of a pool in which only the leader works.
//
// It runs an election::Leadership: the library's leader loop campaigns, runs this node's work
// while it leads, cancels the work when the leadership ends (and waits until it has stopped
// before the node says "lost"), and campaigns again, for as long as the process runs. The work:
// once a second it writes a counter through a fenced write, which etcd applies only while this
// node's leader key still exists. The loop's hooks print every leader change observed. With
// --metrics it serves /metrics and /healthz. On SIGINT or SIGTERM it stops the loop: the work
// stops, the leadership is resigned and the lease revoked (the next candidate takes over in
// milliseconds), and it exits 0.
//
// What is left here: the flags, the work, and the output.
// One io_context, one thread: every coroutine here runs on it, so none of them needs a lock.
#include "leader_worker/json_line.hpp"

#include <election/election.hpp>
#ifdef LEADER_WORKER_METRICS
#include "leader_worker/http_endpoint.hpp"

#include <prometheus/text_serializer.h>
#include <election/prometheus.hpp>
#endif

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
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
#include <functional>
#include <memory>
#include <optional>
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
using leader_worker::json_line;
using Fields = boost::json::object;
using Clock = std::chrono::steady_clock;

constexpr auto connect_timeout = 3s;
// Resign and revoke are two round trips to etcd; past this the process exits anyway and the
// lease expires after its TTL instead.
constexpr auto resign_limit = 800ms;

// --metrics [HOST:]PORT: loopback unless a host says otherwise.
struct MetricsAddress {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string text() const {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
           std::to_string(port);
  }
};

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
  std::optional<MetricsAddress> metrics;  // --metrics
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

std::string one_line(std::string text) {
  for (auto& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text;
}

// Boost's system_error::what() ends in " [category:value]" (and a source location): noise on a
// line meant for people, so it goes.
std::string strip_tag(std::string text, const error_code& code) {
  const auto tag = " [" + std::string(code.category().name()) + ":";
  if (const auto at = text.rfind(tag); at != std::string::npos && text.back() == ']')
    text.erase(at);
  return text;
}

std::string describe(const system_error& e) { return strip_tag(e.what(), e.code()); }

// What the worker prints. Each line is written whole and flushed at once: the output is read
// while the process runs, and a SIGKILL must not lose what was already said.
class Events {
 public:
  Events(std::string node, bool json) : node_(std::move(node)), json_(json) {}

  /// `fields` follow event, node and mono_us in the JSON line; `text` is the readable line.
  void emit(std::string_view event, const Fields& fields, std::string_view text) {
    const auto now = Clock::now();
    std::string line;
    if (json_) {
      Fields all{{"event", event}, {"node", node_}, {"mono_us", micros(now)}};
      all.insert(fields.begin(), fields.end());
      line = json_line(std::move(all));
    } else {
      line = wall_clock() + "  " + node_ + "  " + one_line(std::string(text));
    }
    line += '\n';
    write(stdout, line);
  }

  void error(const std::string& message) {
    emit("error", {{"message", one_line(message)}}, "error: " + message);
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
    election::LeadershipOptions leadership_options;
    leadership_options.participant.ttl = std::chrono::seconds(config_.ttl);
    if (config_.takeover_delay_ms)
      leadership_options.participant.takeover_delay =
          std::chrono::milliseconds(*config_.takeover_delay_ms);
    leadership_options.retry_max = 1s;  // back in line soon after an outage
    // Bad endpoints, election names and a --metrics address that cannot be bound are refused
    // here, before anything is sent.
    std::optional<election::Client> client;
    std::optional<election::Leadership> leadership;
    try {
      client.emplace(executor, options);
      leadership.emplace(*client, config_.election, config_.node, work(), leadership_options,
                         hooks());
    } catch (const system_error& e) {
      events_.fatal(describe(e));
      co_return 2;
    }
    leadership_ = &*leadership;
#ifdef LEADER_WORKER_METRICS
    // The collector holds no reference: it outlives what it reports on safely.
    auto collector = std::make_shared<election::prometheus::Collector>();
    std::optional<leader_worker::HttpEndpoint> http;
    if (config_.metrics) {
      collector->add(*client);
      collector->add(*leadership);
      try {
        http.emplace(executor, config_.metrics->host, config_.metrics->port,
                     http_handler(*collector, *leadership));
      } catch (const std::exception& e) {
        events_.fatal("--metrics " + config_.metrics->text() + ": " + e.what());
        co_return 2;
      }
      asio::co_spawn(executor, http->serve(), asio::detached);
    }
#endif

    asio::signal_set signals(executor, SIGINT, SIGTERM);
    // Past resign_limit after the signal the process exits anyway (the resign is cancelled).
    asio::steady_timer limit(executor, asio::steady_timer::time_point::max());
    // Expires at the first signal: a start-up still waiting for etcd gives up at once.
    asio::steady_timer stop_requested(executor, asio::steady_timer::time_point::max());
    bool stopping = false;
    signals.async_wait([&](const error_code& ec, int) {
      if (ec) return;
      stopping = true;
      leadership->stop();
      stop_requested.expires_at(asio::steady_timer::time_point::min());
      limit.expires_after(resign_limit);
      // A second signal during the clean-up ends the process at once.
      signals.async_wait([](const error_code& ec, int) {
        if (ec) return;
        static constexpr char message[] = "leader-worker: second signal: exiting at once\n";
        (void)!::write(STDERR_FILENO, message, sizeof message - 1);
        std::_Exit(1);
      });
    });
    // main() blocked these until now: a signal that came during start-up was held, and is
    // delivered to the signal_set here instead of killing the process.
    set_stop_signals_blocked(false);
    int code = 0;
    try {
      auto ended =
          co_await election::first_of(lifecycle(*client, *leadership, stop_requested), wait(limit));
      if (ended.index() == 1) {
        events_.fatal("resign did not finish within " + std::to_string(resign_limit.count()) +
                      " ms; the lease expires after its TTL");
        code = 1;
      } else if (campaigned_) {
        events_.emit("resigned", {}, "resigned: leader key deleted, lease revoked");
      }
    } catch (const system_error& e) {
      if (!(stopping && e.code() == asio::error::operation_aborted)) {
        events_.fatal(stopping
                          ? "resign failed: " + describe(e) + "; the lease expires after its TTL"
                          : describe(e));
        code = 1;
      }
    }
    signals.cancel();
    leadership_ = nullptr;
    leadership.reset();
    client.reset();
    co_return code;
  }

 private:
  // Connects (failing fast when etcd cannot be reached at start) and says which takeover delay
  // the campaigns use, unless stopped first; then runs the leader loop until stop().
  asio::awaitable<void> lifecycle(election::Client& client, election::Leadership& leadership,
                                  asio::steady_timer& stop_requested) {
    auto started = co_await election::first_of(start(client), wait(stop_requested));
    if (started.index() == 1) co_return;  // a signal before etcd was reached
    co_await leadership.run();
  }

  asio::awaitable<void> start(election::Client& client) {
    try {
      co_await client.connect();
    } catch (const system_error& e) {
      // Refused credentials or certificates: the library's message says which, "cannot reach"
      // would mislead.
      if (e.code() == asio::error::operation_aborted || e.code() == errc::auth_failed ||
          e.code() == errc::tls_failed)
        throw;
      throw system_error(e.code(), "cannot reach etcd at " + join(config_.endpoints) + " within " +
                                       std::to_string(connect_timeout.count()) + " s");
    }
    co_await report_takeover_delay(client);
  }

  // Completes when the timer expires; a timer set again meanwhile is waited for again.
  static asio::awaitable<void> wait(asio::steady_timer& timer) {
    for (;;) {
      error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (!ec) co_return;
      const auto state = co_await asio::this_coro::cancellation_state;
      if (state.cancelled() != asio::cancellation_type::none) throw system_error(ec);
    }
  }

  void stream_event(const election::ClientEvent& e) {
    using Kind = election::ClientEvent::Kind;
    if (e.kind == Kind::internal_error) {
      events_.emit("internal-error", {{"what", e.what}},
                   "the election library's background work failed: " + e.what);
      return;
    }
    const char* kind = e.kind == Kind::watch_stream        ? "watch"
                       : e.kind == Kind::watch_stalled     ? "watch-stalled"
                       : e.kind == Kind::keep_alive_stream ? "keep-alive"
                                                           : "keep-alive-hedged";
    const char* text = e.kind == Kind::watch_stream        ? "the election watch answers from "
                       : e.kind == Kind::watch_stalled     ? "the election watch fell silent on "
                       : e.kind == Kind::keep_alive_stream ? "the keep-alive answers from "
                                                           : "renewals went unanswered on ";
    events_.emit("stream", {{"kind", kind}, {"peer", e.peer}},
                 std::string(text) + (e.peer.empty() ? "an unknown member" : e.peer));
  }

  // Says which takeover delay the campaigns use, and why: the flag, or etcd's version.
  asio::awaitable<void> report_takeover_delay(election::Client& client) {
    const auto version = co_await client.server_version();
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
                 {{"version", shown},
                  {"takeover_delay_ms", delay.count()},
                  {"takeover_delay_from", from_flag ? "flag" : "etcd-version"}},
                 "etcd " + shown + ": takeover delay " + std::to_string(delay.count()) + " ms (" +
                     why + ")");
  }

  // What the leader loop reports, as the worker's events.
  election::LeadershipHooks hooks() {
    election::LeadershipHooks h;
    h.campaigning = [this](const election::CampaignStarted& c) {
      campaigned_ = true;
      const auto lease = election::lease_hex(c.lease);
      events_.emit("campaigning", {{"lease", lease}, {"ttl", c.ttl.count()}},
                   "campaigning in '" + config_.election + "' with lease " + lease + " (TTL " +
                       std::to_string(c.ttl.count()) + " s)");
    };
    h.elected = [this](const election::LeaderKey& key) {
      const auto granted = leadership_->participant().granted_ttl().count();
      events_.emit("elected",
                   {{"key", key.key},
                    {"rev", key.create_revision},
                    {"lease", election::lease_hex(key.lease)},
                    {"ttl", granted}},
                   "elected: leads with key " + key.key + " (revision " +
                       std::to_string(key.create_revision) + ", lease " +
                       election::lease_hex(key.lease) + ", TTL " + std::to_string(granted) + " s)");
    };
    h.lost = [this](const election::LeadershipLost& lost) { report_lost(lost); };
    h.work_overran = [this](const election::LeaderKey& key) {
      events_.error("the work of the leadership at revision " +
                    std::to_string(key.create_revision) + " is still running after its turn ended");
    };
    h.leader_changed = [this](const election::LeaderEvent& change) {
      if (change.leader) {
        const auto& leader = *change.leader;
        events_.emit(
            "leader",
            {{"value", leader.value}, {"key", leader.key}, {"rev", leader.create_revision}},
            "observed: the leader is " + leader.value + " (key " + leader.key + ", revision " +
                std::to_string(leader.create_revision) + ")");
      } else {
        events_.emit("no-leader", {}, "observed: the election has no leader");
      }
    };
    h.retrying = [this](const election::RetryScheduled& r) {
      events_.error("campaign failed: " + strip_tag(r.message, r.error) +
                    "; campaigning again in " + std::to_string(r.next_attempt_in.count()) + " ms");
    };
    return h;
  }

  void report_lost(const election::LeadershipLost& lost) {
    const auto rev = lost.key.create_revision;
    if (lost.reason == asio::error::operation_aborted) {
      events_.emit("lost", {{"reason", "shutdown"}, {"rev", rev}},
                   "lost the leadership: shutting down, work stopped");
      return;
    }
    Fields fields{{"reason", election::reason_name(lost.reason)}, {"rev", rev}};
    std::string text = "lost the leadership: " + lost.reason.message();
    if (!lost.message.empty()) text += " (" + lost.message + ")";
    if (lost.reason == errc::lease_deadline_passed && lost.deadline) {
      fields["deadline_us"] = micros(on_monotonic(*lost.deadline));
      text += " (the local deadline passed " +
              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 election::lease_clock::now() - *lost.deadline)
                                 .count()) +
              " ms ago)";
    }
    if (!lost.work_stopped_in_time) text += "; the work stopped late";
    events_.emit("lost", fields, text + "; work stopped");
  }

  // The leader's work: ticks once a second, the first time at once; each tick writes the
  // counter through the fenced write. Never returns: the leadership's end cancels it.
  election::Leadership::Work work() {
    return [this](election::Participant& me, const election::LeaderKey& key) {
      return work_loop(me, key);
    };
  }

  asio::awaitable<void> work_loop(election::Participant& me, election::LeaderKey key) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer tick(executor);
    asio::steady_timer limit(executor);
    auto next = Clock::now();
    for (;;) {
      tick.expires_at(next);
      co_await tick.async_wait(asio::use_awaitable);
      next = std::max(next + 1s, Clock::now());
      // Past the local deadline the term is over even if the loop has not said so yet.
      const auto deadline = me.deadline();
      if (!me.is_leader() || !deadline) continue;

      const auto seq = ++seq_;
      // The value names its writer and the fence it is written under, so etcd's history alone
      // says who wrote what under which leadership.
      const auto value =
          json_line({{"node", config_.node}, {"seq", seq}, {"fence", key.create_revision}});
      std::int64_t revision = 0;
      std::string failure;
      // An answer after the deadline would come from a node that no longer counts as leader:
      // such a write is given up on (etcd may still have applied it, fenced: before the end).
      limit.expires_at(on_monotonic(*deadline));
      try {
        auto written = co_await election::first_of(me.put_if_leader(counter_key_, value),
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
      Fields fields{
          {"rev", revision}, {"seq", seq}, {"ok", failure.empty()}, {"fence", key.create_revision}};
      if (!failure.empty()) fields["error"] = failure;
      events_.emit("work", fields,
                   failure.empty() ? "work: wrote " + counter_key_ + " = " + value + " (revision " +
                                         std::to_string(revision) + ")"
                                   : "work: write " + std::to_string(seq) + " failed: " + failure);
    }
  }

#ifdef LEADER_WORKER_METRICS
  // /metrics: the Prometheus text format; /healthz: 200 "ok STATE" or 503 and the reason.
  static leader_worker::HttpEndpoint::Handler http_handler(
      const election::prometheus::Collector& collector, const election::Leadership& leadership) {
    return [&collector, &leadership](std::string_view path) -> leader_worker::HttpResponse {
      if (path == "/metrics")
        return {200, "text/plain; version=0.0.4; charset=utf-8",
                prometheus::TextSerializer().Serialize(collector.Collect())};
      if (path == "/healthz") {
        const auto h = leadership.health();
        const std::string state = election::state_name(h.state);
        if (h.healthy) return {200, "text/plain; charset=utf-8", "ok " + state + "\n"};
        return {503, "text/plain; charset=utf-8", "unhealthy " + state + ": " + h.reason + "\n"};
      }
      return {404, "text/plain; charset=utf-8", "not found: try /metrics or /healthz\n"};
    };
  }
#endif

  const Config& config_;
  Events& events_;
  std::string counter_key_;
  election::Leadership* leadership_ = nullptr;
  bool campaigned_ = false;
  std::int64_t seq_ = 0;
};

// Where --user NAME finds its password when no flag gives it: the environment is readable only
// by this user (and root), unlike the command line.
constexpr const char* password_variable = "LEADER_WORKER_PASSWORD";

// [HOST:]PORT, [IPV6]:PORT. Returns what is wrong with it, if anything.
std::optional<std::string> parse_metrics_address(const std::string& text, Config& config) {
#ifndef LEADER_WORKER_METRICS
  (void)text;
  (void)config;
  return "this leader-worker was built without prometheus-cpp (install prometheus-cpp-dev)";
#else
  MetricsAddress address;
  std::string port = text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::string("expected [IPV6]:PORT");
    address.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else if (const auto colon = text.rfind(':'); colon != std::string::npos) {
    if (colon > 0) address.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return std::string("expected [HOST:]PORT with PORT a number");
  const auto number = std::stoi(port);
  if (number < 1 || number > 65535) return std::string("the port must be 1 to 65535");
  address.port = static_cast<std::uint16_t>(number);
  config.metrics = address;
  return std::nullopt;
#endif
}

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
      "--metrics: /metrics has election_is_leader, election_terms_won_total,\n"
      "election_leadership_ends_total{reason}, election_renewal_seconds and more; /healthz\n"
      "answers 503 when renewals are wedged, the work outlived its turn, or campaigning has\n"
      "failed for a minute.\n"
      "Exit: 0 after SIGINT/SIGTERM, 1 on a runtime failure (etcd unreachable, credentials\n"
      "refused, resign failed), 2 on bad input (also a --metrics address that cannot be bound).\n"
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
  std::string metrics;
  app.add_option("--metrics", metrics,
                 "Serve /metrics (Prometheus text format) and /healthz (200 when healthy, 503 "
                 "and the reason when not) on [HOST:]PORT; HOST defaults to 127.0.0.1: name an "
                 "address to listen beyond loopback");
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
  if (!metrics.empty()) {
    if (const auto error = parse_metrics_address(metrics, config)) {
      std::fprintf(stderr, "leader-worker: --metrics %s: %s\n", metrics.c_str(), error->c_str());
      return 2;
    }
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
