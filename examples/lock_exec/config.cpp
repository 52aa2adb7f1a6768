// parse_command_line(): lock-exec's flags (CLI11), their --help text, and the checks that make a
// Config out of them. The credentials are read as leader-worker reads them
// (common/credentials.hpp), with $LOCK_EXEC_PASSWORD. Every refusal is one line on stderr and
// exit code 2.
#include "config.hpp"

#include "common/credentials.hpp"
#include "common/text.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <utility>

namespace lock_exec {
namespace {

constexpr const char* password_variable = "LOCK_EXEC_PASSWORD";

}  // namespace

std::optional<int> parse_command_line(int argc, char** argv, Config& config) {
  CLI::App app{
      "lock-exec [flags] NAME -- CMD [ARGS...]\n"
      "Runs a command while holding an etcd v3 lock, as etcdctl lock NAME CMD... does.\n"
      "It waits in line for the lock NAME (one queue with etcdctl lock and etcd's Go Mutex),\n"
      "runs CMD with ETCD_LOCK_KEY, ETCD_LOCK_REV and ETCD_LOCK_FENCE in its environment,\n"
      "releases the lock when CMD and every process of its group have exited, and exits with\n"
      "CMD's exit code.",
      "lock-exec"};
  app.footer(
      "CMD's environment: ETCD_LOCK_KEY  the lock's key in etcd, NAME/hex(lease), as etcdctl;\n"
      "  ETCD_LOCK_FENCE  the fencing token: the key's create revision (every later holder's is\n"
      "  larger: pass it to what the lock protects); ETCD_LOCK_REV  the same revision (etcdctl\n"
      "  sets the revision of the response that granted the lock, at or after it).\n"
      "Process group: CMD runs in a process group of its own (its id CMD's pid). Every signal\n"
      "  lock-exec sends goes to the whole group, and the lock is released only once no process\n"
      "  of the group is left (lock-exec is the subreaper of CMD's orphans, and reaps them). A\n"
      "  process that leaves the group on purpose (setsid, setpgid: a daemon) is CMD's business:\n"
      "  lock-exec neither signals it nor waits for it. When CMD's main process exits while\n"
      "  others of its group run on, they get SIGTERM, and SIGKILL --kill-after later (as\n"
      "  systemd's KillMode=control-group), unless a signal was passed on to them or the lock\n"
      "  lost before; lock-exec exits with the main process's code once the group is empty.\n"
      "  A terminal's ^C reaches lock-exec only (the group is not the foreground group), which\n"
      "  passes it on, as its ^\\ and its hangup; ^Z stops lock-exec alone (a frozen lock-exec\n"
      "  renews nothing: see below); a read from the terminal stops CMD (SIGTTIN).\n"
      "Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT while waiting: leave the queue, exit 128 + N.\n"
      "  While CMD's group runs: passed on to the group (then SIGCONT, so that a stopped process\n"
      "  acts on them); lock-exec waits, with no time limit while the lock is held, until the\n"
      "  group is empty. Started with SIGHUP ignored (nohup), lock-exec and CMD ignore it.\n"
      "Losing the lock (lease expired or revoked, key deleted, or the lease's local deadline\n"
      "  passed: last acknowledged renewal's send time + TTL - min(TTL/10, 1 s)): CMD's group\n"
      "  gets SIGTERM at once and SIGKILL --kill-after later; the lock is released once the\n"
      "  group is empty (quietly: there may be nothing left to release); lock-exec exits 3.\n"
      "The bound: CMD's group is SIGKILLed within --kill-after of lock-exec seeing the loss.\n"
      "  After a removal of the key nobody signed (etcdctl del, lease revoke, etcd's revocation\n"
      "  of a stale leader's lease, an expiry) the next lock-exec waits --takeover-delay from\n"
      "  when it sees the removal, about when this one does. So with\n"
      "  --kill-after < --takeover-delay (by default 100 < 200 ms) CMD's group is dead before\n"
      "  the next lock-exec's command starts, unless lock-exec itself is frozen (a stopped\n"
      "  process signals nobody; it stops CMD the moment it runs again) or a process left the\n"
      "  group. After the local deadline the key stays until lock-exec releases it or etcd\n"
      "  expires the lease, a margin later. A --kill-after not below --takeover-delay is\n"
      "  accepted with a warning. The bound holds between lock-exec holders: etcdctl lock waits\n"
      "  no delay, a library Mutex its own.\n"
      "Output: nothing of its own but failures (and the warning above) on stderr; with --json\n"
      "  one JSON object a line on stdout (shared with CMD's): {\"event\": E, \"name\": NAME,\n"
      "  \"mono_us\": T, ...}, T on CLOCK_MONOTONIC in us: locked (key, revision, lease, ttl)\n"
      "  child-started (pid, pgid, command)  signal (signal[, pgid])  lost (reason, message)\n"
      "  killed (pgid, signal)  child-exited (pid, code[, signal]): CMD's main process\n"
      "  group-running (pgid): others of its group left  group-exited (pgid): none left\n"
      "  unlocked  error (message).\n"
      "Exit: CMD's exit code (128 + N if signal N ended it, as a shell); 1 when etcd cannot be\n"
      "  reached or the lock taken; 2 on bad input; 3 when the lock was lost before CMD's group\n"
      "  was empty; 127 when CMD cannot be started; 128 + N on signal N before the lock was\n"
      "  taken (130 SIGINT, 143 SIGTERM, 129 SIGHUP, 131 SIGQUIT).\n"
      "Credentials: prefer --user NAME with --password-file FILE or $LOCK_EXEC_PASSWORD; a\n"
      "  password on the command line is visible to every local user in /proc/PID/cmdline.");
  // One string, split here: a list option would take NAME as one more member.
  std::string endpoints;
  app.add_option("--endpoints", endpoints,
                 "etcd members as host:port,host:port,...; https://host:port for TLS "
                 "[127.0.0.1:2379]");
  app.add_option("--ttl", config.ttl,
                 "Lease TTL in s: how soon another holder gets the lock if this process dies")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{9'000'000'000}))
      ->capture_default_str();
  std::int64_t takeover_delay_ms = default_takeover_delay.count();
  app.add_option("--takeover-delay", takeover_delay_ms,
                 "ms to wait before taking the lock after a removal of its key nobody signed "
                 "(etcdctl del, lease revoke, an expiry), whatever etcd's version (see below)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{60'000}))
      ->capture_default_str();
  std::optional<std::int64_t> kill_after_ms;
  app.add_option("--kill-after", kill_after_ms,
                 "ms between SIGTERM and SIGKILL to CMD's process group when lock-exec stops it "
                 "(the lock lost, CMD's main process exited); default half --takeover-delay "
                 "(see below)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{3'600'000}));
  app.add_flag("--json", config.json, "Print one JSON object a line on stdout (see below)");
  // As etcdctl names them. Values are not echoed in errors: --user may hold a password.
  app.add_option("--cacert", config.tls.ca_file,
                 "CA bundle (PEM) to verify etcd's TLS certificate with; implies TLS");
  app.add_option("--cert", config.tls.cert_file, "Client certificate (PEM) for mutual TLS");
  app.add_option("--key", config.tls.key_file, "Private key (PEM) of --cert");
  example_common::CredentialFlags credentials;
  app.add_option("--user", credentials.user,
                 "etcd user: NAME, with the password from --password-file or $" +
                     std::string(password_variable) +
                     " (preferred), or NAME:PASSWORD (seen by every local user in "
                     "/proc/PID/cmdline)");
  auto* file = app.add_option("--password-file", credentials.password_file,
                              "File holding the password of --user NAME (its first line)");
  auto* password = app.add_option("--password", config.password,
                                  "Password of --user NAME, on the command line (visible in "
                                  "/proc/PID/cmdline: prefer --password-file)")
                       ->excludes(file);
  app.add_option("NAME", config.name, "The lock's name (its key prefix in etcd)")->required();
  app.add_option("CMD", config.command, "The command and its arguments, after --");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help: the text on stdout, exit 0
    std::fprintf(stderr, "lock-exec: %s (usage: lock-exec [flags] NAME -- CMD [ARGS...])\n",
                 example_common::one_line(e.what()).c_str());
    return exit_bad_input;
  }
  if (config.name.empty()) {
    std::fprintf(stderr, "lock-exec: NAME must not be empty\n");
    return exit_bad_input;
  }
  if (config.command.empty() || config.command.front().empty()) {
    std::fprintf(stderr, "lock-exec: no command: lock-exec [flags] NAME -- CMD [ARGS...]\n");
    return exit_bad_input;
  }
  if (!endpoints.empty()) {
    config.endpoints = example_common::split_commas(endpoints);
    for (const auto& e : config.endpoints) {
      if (e.empty()) {
        std::fprintf(stderr, "lock-exec: --endpoints: empty member in the list\n");
        return exit_bad_input;
      }
    }
  }
  if (config.tls.cert_file.empty() != config.tls.key_file.empty()) {
    std::fprintf(stderr, "lock-exec: --cert and --key go together\n");
    return exit_bad_input;
  }
  config.takeover_delay = std::chrono::milliseconds(takeover_delay_ms);
  config.kill_after =
      kill_after_ms ? std::chrono::milliseconds(*kill_after_ms) : config.takeover_delay / 2;
  if (config.kill_after >= config.takeover_delay) {
    // Allowed: a command that needs longer to stop, a lock no other lock-exec takes. Said once.
    std::fprintf(stderr,
                 "lock-exec: warning: --kill-after %lld ms is not below --takeover-delay %lld ms: "
                 "after a removal of the lock's key nobody signed (etcdctl del, lease revoke), "
                 "the next lock-exec may start its command before this one's is killed\n",
                 static_cast<long long>(config.kill_after.count()),
                 static_cast<long long>(config.takeover_delay.count()));
  }
  credentials.password_given = password->count() > 0;
  credentials.file_given = file->count() > 0;
  return example_common::read_credentials("lock-exec", password_variable, std::move(credentials),
                                          config.user, config.password);
}

}  // namespace lock_exec
