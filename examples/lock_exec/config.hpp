// lock-exec's settings, as the command line gives them: etcd's members, TLS and credentials (as
// etcdctl names them), the lock's name and TTL, --takeover-delay and --kill-after, --json, and
// the command to run.
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

/// The default --takeover-delay, whatever etcd's version. The default --kill-after is half of
/// it, and that is the bound: after a removal of the key nobody signed (etcdctl del, lease
/// revoke, etcd's revocation of a stale leader's lease, an expiry) the next lock-exec holder
/// waits the takeover delay from when it sees the removal, and this one, seeing it about then,
/// has SIGKILLed its command's group --kill-after after it, leaving the rest of the delay for
/// the kill and the reap. 200 ms: the library's delay on etcd before 3.4.31 and 3.5.13.
inline constexpr std::chrono::milliseconds default_takeover_delay{200};

struct Config {
  std::vector<std::string> endpoints{"127.0.0.1:2379"};
  std::int64_t ttl = 10;  // s
  /// The Mutex's takeover delay: how long lock() waits after a removal of the lock's key that
  /// nobody signed. Not the library's choice by etcd's version (0 on fixed ones): the bound
  /// below needs one between lock-exec holders.
  std::chrono::milliseconds takeover_delay = default_takeover_delay;
  /// Between SIGTERM and SIGKILL to the command's group. Default: half the takeover delay.
  std::chrono::milliseconds kill_after{0};
  bool json = false;
  election::TlsOptions tls;
  std::string user;
  std::string password;              // never printed
  std::string name;                  // the lock
  std::vector<std::string> command;  // CMD ARGS...
};

/// Returns an exit code when the process should end now (--help, bad input).
std::optional<int> parse_command_line(int argc, char** argv, Config& config);

}  // namespace lock_exec
