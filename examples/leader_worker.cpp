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
// What is left here: the work and the node's life. The flags are in leader_worker/config, the
// output in leader_worker/events.
// One io_context, one thread: every coroutine here runs on it, so none of them needs a lock.
#include "leader_worker/config.hpp"
#include "leader_worker/events.hpp"
#include "leader_worker/json_line.hpp"

#include <election/election.hpp>
#ifdef LEADER_WORKER_METRICS
#include "leader_worker/http_endpoint.hpp"

#include <prometheus/text_serializer.h>
#include <election/prometheus.hpp>
#endif

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
#include <cstdlib>
#include <exception>
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
using namespace leader_worker;

constexpr auto connect_timeout = 3s;
// Resign and revoke are two round trips to etcd; past this the process exits anyway and the
// lease expires after its TTL instead.
constexpr auto resign_limit = 800ms;

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
