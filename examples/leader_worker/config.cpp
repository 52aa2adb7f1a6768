// parse_command_line(): leader-worker's flags (CLI11), their --help text, and the checks that
// make a Config out of them. Two jobs have a function of their own: the --metrics address
// ([HOST:]PORT, [IPV6]:PORT) and the credentials (common/credentials.hpp, shared with lock-exec),
// whose password comes from --password-file, $LEADER_WORKER_PASSWORD, --user NAME:PASSWORD or
// --password, and is never printed. Every refusal is one line on stderr and exit code 2.
#include "config.hpp"

#include "events.hpp"

#include "common/credentials.hpp"
#include "common/text.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <utility>

namespace leader_worker {
namespace {

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

}  // namespace

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
      "  work-cancelled (rev, stop_latency_ms)   work-stopped (rev, how: cancelled | returned |\n"
      "  failed)   work-overran (rev; Leadership's work_overran: the work outlived its turn)\n"
      "  lost (reason, rev; deadline_us if the reason is deadline-passed)   resigned\n"
      "  leader (value, key, rev)   no-leader   error (message)\n"
      "A node acts as leader from `elected` until its next `lost` or `resigned`, its work's\n"
      "`work-cancelled`, or the `deadline_us` of that `lost`, whichever is earlier. Its work\n"
      "runs from `elected` until its `work-stopped`, --stop-latency ms after `work-cancelled`.\n"
      "--metrics: /metrics has election_is_leader, election_terms_won_total,\n"
      "election_leadership_ends_total{reason}, election_renewal_seconds and more; /healthz\n"
      "answers 503 when renewals are wedged, the work outlived its turn, or campaigning has\n"
      "failed for a minute.\n"
      "Exit: 0 after SIGINT/SIGTERM, 1 on a runtime failure (etcd unreachable, credentials\n"
      "refused, resign failed), 2 on bad input (also a --metrics address that cannot be bound).\n"
      "Credentials: prefer --user NAME with --password-file FILE or $LEADER_WORKER_PASSWORD;\n"
      "a password on the command line is visible to every local user in /proc/PID/cmdline.");
  // One string, split here: a list option of CLI11 drops an empty item ("a,,b") unsaid.
  std::string endpoints;
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
  app.add_option("--lock", config.lock_writes,
                 "Take the lock named --election instead of campaigning (etcd's lock, one queue "
                 "with etcdctl lock; the key holds no value), release it after N writes and take "
                 "it again; the events keep their names (elected: the lock is held; lost with "
                 "reason work-finished: released)")
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--stop-latency", config.stop_latency_ms,
                 "ms the work takes to stop once its leadership has ended: it lingers that long "
                 "after its cancellation before it stops (`work-cancelled`, then `work-stopped`), "
                 "as a work in the midst of an operation it cannot cut short would; for testing "
                 "what a slow-stopping work does (the chaos suite); 0 stops at once")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{60'000}))
      ->capture_default_str();
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
    config.endpoints = example_common::split_commas(endpoints);
    for (const auto& e : config.endpoints) {
      if (e.empty()) {
        std::fprintf(stderr, "leader-worker: --endpoints: empty member in the list\n");
        return 2;
      }
    }
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
  example_common::CredentialFlags credentials{std::move(user), password->count() > 0,
                                              file->count() > 0, password_file};
  return example_common::read_credentials("leader-worker", password_variable,
                                          std::move(credentials), config.user, config.password);
}

}  // namespace leader_worker
