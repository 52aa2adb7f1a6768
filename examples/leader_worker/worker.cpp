// The definitions of worker.hpp: the node's life from its options to its exit code, the start
// (connect, then say which takeover delay applies), and the stop on a signal (resign, revoke,
// within resign_limit; a second signal exits at once).
#include "worker.hpp"

#ifdef LEADER_WORKER_METRICS
#include "metrics.hpp"

#include <election/prometheus.hpp>
#endif

#include <election/error.hpp>
#include <election/first_of.hpp>
#include <election/mutex.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <unistd.h>

namespace leader_worker {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using boost::system::system_error;
using election::errc;

namespace {

constexpr auto connect_timeout = 3s;
// Resign and revoke are two round trips to etcd; past this the process exits anyway and the
// lease expires after its TTL instead.
constexpr auto resign_limit = 800ms;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

// Completes when the timer expires; a timer set again meanwhile is waited for again.
asio::awaitable<void> wait(asio::steady_timer& timer) {
  for (;;) {
    error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) co_return;
    const auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) throw system_error(ec);
  }
}

}  // namespace

void set_stop_signals_blocked(bool blocked) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
}

asio::awaitable<int> Worker::run() {
  auto executor = co_await asio::this_coro::executor;
  election::ClientOptions options;
  options.endpoints = config_.endpoints;
  options.connect_timeout = connect_timeout;
  options.tls = config_.tls;
  options.user = config_.user;
  options.password = config_.password;
  // Where the long-lived streams are, and when one moves off a member that stopped answering.
  options.on_event = [this](const election::ClientEvent& e) { reports_.stream_event(e); };
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
    if (config_.lock_writes)
      leadership.emplace(election::lock_loop(*client, config_.election, work_.work(),
                                             leadership_options, reports_.hooks()));
    else
      leadership.emplace(*client, config_.election, config_.node, work_.work(), leadership_options,
                         reports_.hooks());
  } catch (const system_error& e) {
    events_.fatal(describe(e));
    co_return 2;
  }
  reports_.attach(&*leadership);
#ifdef LEADER_WORKER_METRICS
  // The collector holds no reference: it outlives what it reports on safely.
  auto collector = std::make_shared<election::prometheus::Collector>();
  std::optional<HttpEndpoint> http;
  if (config_.metrics) {
    collector->add(*client);
    collector->add(*leadership);
    try {
      http.emplace(executor, config_.metrics->host, config_.metrics->port,
                   metrics_handler(*collector, *leadership));
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
    } else if (reports_.campaigned()) {
      events_.emit("resigned", {}, "resigned: leader key deleted, lease revoked");
    }
  } catch (const system_error& e) {
    if (!(stopping && e.code() == asio::error::operation_aborted)) {
      events_.fatal(stopping ? "resign failed: " + describe(e) + "; the lease expires after its TTL"
                             : describe(e));
      code = 1;
    }
  }
  signals.cancel();
  reports_.attach(nullptr);
  leadership.reset();
  client.reset();
  co_return code;
}

// Connects (failing fast when etcd cannot be reached at start) and says which takeover delay
// the campaigns use, unless stopped first; then runs the leader loop until stop().
asio::awaitable<void> Worker::lifecycle(election::Client& client, election::Leadership& leadership,
                                        asio::steady_timer& stop_requested) {
  auto started = co_await election::first_of(start(client), wait(stop_requested));
  if (started.index() == 1) co_return;  // a signal before etcd was reached
  co_await leadership.run();
}

asio::awaitable<void> Worker::start(election::Client& client) {
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
  co_await reports_.report_takeover_delay(client);
}

}  // namespace leader_worker
