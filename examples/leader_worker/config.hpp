// leader-worker's settings, as the command line gives them. Config is everything the worker
// needs to know before it starts: etcd's members, the election, the lease TTL and takeover
// delay, TLS and credentials, --json and --metrics. parse_command_line() fills it from argv and
// checks it, or says on stderr what is wrong and returns the exit code; its definition (with the
// --metrics address and the password's sources) is in config.cpp.
#pragma once

#include <election/client.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace leader_worker {

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
  // --lock N: take the lock named --election (etcd's lock, one queue with etcdctl lock)
  // instead of campaigning, release it after N writes, take it again; unset: an election.
  std::optional<int> lock_writes;
  // --stop-latency MS: once its leadership has ended, the work takes this long to stop (it
  // lingers after its cancellation), as a work inside an operation it cannot cut short would;
  // 0: it stops at once. For testing (the chaos suite).
  std::int64_t stop_latency_ms = 0;
};

/// Returns an exit code when the process should end now (--help, bad input).
std::optional<int> parse_command_line(int argc, char** argv, Config& config);

}  // namespace leader_worker
