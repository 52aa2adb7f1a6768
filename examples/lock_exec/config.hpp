// lock-exec's settings, as the command line gives them: etcd's members, TLS and credentials (as
// etcdctl names them), the lock's name and TTL, --kill-after, --json, and the command to run.
// parse_command_line() fills a Config from argv and checks it, or says on stderr what is wrong
// and returns the exit code. Definitions in config.cpp.
#pragma once

#include <election/client.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lock_exec {

/// The exit codes of lock-exec's own (otherwise it exits with the command's code).
enum Exit : int {
  exit_failure = 1,       // etcd unreachable, credentials refused, the lock could not be taken
  exit_bad_input = 2,     // bad flags, no NAME or no command
  exit_lost = 3,          // the lock was lost while the command ran (the command was stopped)
  exit_cannot_run = 127,  // the command could not be started (as a shell: not found)
};

struct Config {
  std::vector<std::string> endpoints{"127.0.0.1:2379"};
  std::int64_t ttl = 10;  // s
  /// Between SIGTERM and SIGKILL when the lock is lost. Default: default_kill_after(ttl).
  std::chrono::milliseconds kill_after{0};
  bool json = false;
  election::TlsOptions tls;
  std::string user;
  std::string password;              // never printed
  std::string name;                  // the lock
  std::vector<std::string> command;  // CMD ARGS...
};

/// The default --kill-after: half the lease's margin, min(TTL/10, 1 s) / 2. The hold ends at
/// the lease's local deadline (send time of the last acknowledged renewal + TTL - margin), and
/// etcd cannot expire the lease before that send time + TTL: SIGTERM at the deadline and
/// SIGKILL half a margin later leave the other half for the kill and the reap before another
/// holder could be let in (plus the takeover delay such a holder waits after an expiry).
std::chrono::milliseconds default_kill_after(std::int64_t ttl_s);

/// Returns an exit code when the process should end now (--help, bad input).
std::optional<int> parse_command_line(int argc, char** argv, Config& config);

}  // namespace lock_exec
