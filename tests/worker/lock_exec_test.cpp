// lock-exec as a user runs it: separate processes against the etcd fixture, the commands they
// run `sh -c` scripts that write what they saw (environment, start and end times) to files,
// judged by those files, lock-exec's --json lines and stderr, its exit codes, and etcd's keys
// (etcdctl). Times in the files are the wall clock (`date +%s%N`), compared only with each
// other and with the test's own wall clock.
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/process.hpp"
#include "worker/json_lines.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#ifndef ELECTION_LOCK_EXEC
#error "ELECTION_LOCK_EXEC must name the lock-exec program"
#endif

using namespace std::chrono_literals;
using election::test::ChildProcess;
using election::test::WorkerEvent;

namespace {

std::filesystem::path work_dir(const std::string& name) {
  auto dir = std::filesystem::path(ELECTION_TEST_WORK_DIR) /
             ("lock-exec-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string read_text(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string endpoint_list(const std::vector<std::string>& endpoints) {
  std::string out;
  for (const auto& e : endpoints) out += (out.empty() ? "" : ",") + e;
  return out;
}
std::string endpoint_list() { return endpoint_list(election::test::fixture_endpoints()); }

bool poll(const std::function<bool()>& ready, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double ms(std::int64_t ns) { return static_cast<double>(ns) / 1e6; }

// The keys under `name/` in etcd, one a line (etcdctl get --prefix --keys-only).
std::vector<std::string> keys_under(const std::string& name, const std::string& endpoint) {
  const auto command = "ETCDCTL_API=3 etcdctl --command-timeout=3s --endpoints=" + endpoint +
                       " get --prefix --keys-only '" + name + "/'";
  std::FILE* out = ::popen(command.c_str(), "r");
  REQUIRE(out != nullptr);
  std::vector<std::string> keys;
  char line[1024];
  while (std::fgets(line, sizeof line, out) != nullptr) {
    std::string key(line);
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
    if (!key.empty()) keys.push_back(key);
  }
  REQUIRE(::pclose(out) == 0);
  return keys;
}
std::vector<std::string> keys_under(const std::string& name) {
  return keys_under(name, election::test::fixture_endpoints().front());
}

// A script's record: "WHAT NANOSECONDS" lines, the first of each WHAT.
std::map<std::string, std::int64_t> marks(const std::filesystem::path& file) {
  std::map<std::string, std::int64_t> out;
  std::istringstream in(read_text(file));
  std::string what;
  std::int64_t ns = 0;
  while (in >> what >> ns) out.emplace(what, ns);
  return out;
}

// `sh -c` that marks its start in $1, sleeps `seconds`, marks its end; on SIGTERM it marks
// "term" and exits 143.
std::vector<std::string> marking_command(const std::filesystem::path& file, double seconds) {
  return {"sh", "-c",
          "echo start $(date +%s%N) >> \"$1\"; "
          "trap 'echo term $(date +%s%N) >> \"$1\"; kill $! 2>/dev/null; exit 143' TERM; "
          "sleep " +
              std::to_string(seconds) + " & wait $!; echo end $(date +%s%N) >> \"$1\"",
          "sh", file.string()};
}

class LockExec {
 public:
  LockExec(const std::string& label, const std::filesystem::path& dir,
           const std::vector<std::string>& flags, const std::vector<std::string>& command)
      : out_(dir / (label + ".jsonl")), process_(argv(flags, command), out_) {}

  ChildProcess& process() { return process_; }
  std::vector<WorkerEvent> events() const {
    return election::test::parse_worker_events(process_.output());
  }
  std::vector<WorkerEvent> events(const std::string& name) const {
    std::vector<WorkerEvent> out;
    for (auto& e : events())
      if (e.event() == name) out.push_back(e);
    return out;
  }
  std::string err() const { return read_text(out_.string() + ".err"); }
  std::string all_output() const { return process_.output() + "\nstderr:\n" + err(); }

 private:
  static std::vector<std::string> argv(const std::vector<std::string>& flags,
                                       const std::vector<std::string>& command) {
    std::vector<std::string> out{ELECTION_LOCK_EXEC};
    out.insert(out.end(), flags.begin(), flags.end());
    out.push_back("--");
    out.insert(out.end(), command.begin(), command.end());
    return out;
  }

  std::filesystem::path out_;
  ChildProcess process_;
};

std::vector<std::string> flags(const std::string& name, int ttl = 3,
                               const std::string& endpoints = endpoint_list()) {
  return {"--endpoints", endpoints, "--ttl", std::to_string(ttl), "--json", name};
}

std::string hex(std::int64_t value) {
  char out[32];
  std::snprintf(out, sizeof out, "%llx", static_cast<unsigned long long>(value));
  return out;
}

}  // namespace

TEST_CASE("runs the command with ETCD_LOCK_KEY/REV/FENCE, exits with its code, unlocks",
          "[lock-exec]") {
  const auto dir = work_dir("env");
  const auto name = election::test::unique_name("lock-exec-env");
  const auto file = dir / "env.txt";
  LockExec run("env", dir, flags(name),
               {"sh", "-c",
                "printf '%s\\n%s\\n%s\\n' \"$ETCD_LOCK_KEY\" \"$ETCD_LOCK_REV\" "
                "\"$ETCD_LOCK_FENCE\" > \"$1\"; exit 7",
                "sh", file.string()});
  REQUIRE(run.process().wait_for(15s));
  INFO(run.all_output());
  CHECK(run.process().wait() == 7);
  const auto locked = run.events("locked");
  REQUIRE(locked.size() == 1);
  std::istringstream seen(read_text(file));
  std::string key, rev, fence;
  std::getline(seen, key);
  std::getline(seen, rev);
  std::getline(seen, fence);
  CHECK(key == name + "/" + hex(locked[0].num("lease")));
  CHECK(key == locked[0].str("key"));
  CHECK(fence == std::to_string(locked[0].num("revision")));
  CHECK(rev == fence);
  CHECK(keys_under(name).empty());

  SECTION("a command ended by a signal: 128 + the signal, as a shell") {
    LockExec killed("killed", dir, flags(name), {"sh", "-c", "kill -9 $$"});
    REQUIRE(killed.process().wait_for(15s));
    INFO(killed.all_output());
    CHECK(killed.process().wait() == 137);
    CHECK(keys_under(name).empty());
  }
  SECTION("a command that cannot be started: 127, the lock released") {
    LockExec missing("missing", dir, flags(name), {"/nonexistent/lock-exec-test-command"});
    REQUIRE(missing.process().wait_for(15s));
    INFO(missing.all_output());
    CHECK(missing.process().wait() == 127);
    CHECK(missing.err().find("/nonexistent/lock-exec-test-command") != std::string::npos);
    CHECK(keys_under(name).empty());
  }
}

TEST_CASE("two lock-exec of one name: the second's command starts after the first's exited",
          "[lock-exec]") {
  const auto dir = work_dir("exclusion");
  const auto name = election::test::unique_name("lock-exec-exclusion");
  LockExec first("first", dir, flags(name), marking_command(dir / "first.txt", 1.0));
  REQUIRE(poll([&] { return marks(dir / "first.txt").count("start") != 0; }, 10s));
  LockExec second("second", dir, flags(name), marking_command(dir / "second.txt", 0.2));
  REQUIRE(first.process().wait_for(15s));
  REQUIRE(second.process().wait_for(15s));
  INFO(first.all_output() << "\n" << second.all_output());
  CHECK(first.process().wait() == 0);
  CHECK(second.process().wait() == 0);
  const auto a = marks(dir / "first.txt"), b = marks(dir / "second.txt");
  REQUIRE(a.count("end") == 1);
  REQUIRE(b.count("start") == 1);
  CHECK(b.at("start") >= a.at("end"));
  // A signed unlock: the next holder takes over at once, no takeover delay.
  std::printf("lock-exec exclusion: second started %.1f ms after the first's command ended\n",
              ms(b.at("start") - a.at("end")));
  CHECK(b.at("start") - a.at("end") < 2'000'000'000);
  CHECK(first.events("locked").at(0).num("revision") <
        second.events("locked").at(0).num("revision"));
  CHECK(keys_under(name).empty());
}

// lock-exec A holds the lock; B waits for it. A (not its command) is SIGSTOPped for longer than
// the TTL, then SIGCONTed.
//
// What can and cannot be guaranteed: a stopped process signals nobody, so A's command runs on
// while A is frozen. etcd expires A's lease at the earliest a TTL after the last renewal it
// received, B is let in after that (plus the takeover delay after an expiry), so with a freeze
// longer than the TTL B's command starts while A is still frozen: the two commands overlap, and
// no lock-exec can prevent it (only fencing can: ETCD_LOCK_FENCE). What lock-exec guarantees,
// and what is asserted: A's hold ended at its local deadline, which passed during the freeze, so
// the moment A runs again it stops its command (SIGTERM at once, asserted within 500 ms of
// SIGCONT), exits 3 with the lost message; and B's command does not start before A's lease can
// have expired at etcd: no earlier than the freeze's start + TTL - one renewal interval (the
// renewals come every TTL/3; asserted with TTL/2).
TEST_CASE("the lock lost while the command runs (lock-exec frozen past its TTL): stopped at once",
          "[lock-exec]") {
  constexpr int ttl = 2;
  const auto dir = work_dir("lost");
  const auto name = election::test::unique_name("lock-exec-lost");
  LockExec a("a", dir, flags(name, ttl), marking_command(dir / "a.txt", 30));
  REQUIRE(poll([&] { return marks(dir / "a.txt").count("start") != 0; }, 10s));
  LockExec b("b", dir, flags(name, ttl), marking_command(dir / "b.txt", 0.2));
  std::this_thread::sleep_for(500ms);
  REQUIRE(b.events("locked").empty());  // B waits in line

  const auto stopped_at = wall_ns();
  a.process().signal(SIGSTOP);
  std::this_thread::sleep_for(std::chrono::seconds(ttl) + 1500ms);
  const auto continued_at = wall_ns();
  a.process().signal(SIGCONT);

  REQUIRE(a.process().wait_for(10s));
  REQUIRE(b.process().wait_for(15s));
  INFO(a.all_output() << "\n" << b.all_output());
  CHECK(a.process().wait() == 3);
  CHECK(b.process().wait() == 0);
  CHECK(a.err().find("lock-exec: lost the lock " + name + " (") != std::string::npos);
  CHECK(a.err().find("); stopped sh") != std::string::npos);
  const auto lost = a.events("lost");
  REQUIRE(lost.size() == 1);
  const auto reason = lost[0].str("reason");
  CHECK((reason == "deadline-passed" || reason == "lease-expired" || reason == "key-deleted"));
  CHECK(!lost[0].str("message").empty());

  const auto am = marks(dir / "a.txt"), bm = marks(dir / "b.txt");
  REQUIRE(am.count("term") == 1);
  REQUIRE(bm.count("start") == 1);
  const auto term_after_cont = am.at("term") - continued_at;
  CHECK(term_after_cont < 500'000'000);
  CHECK(bm.at("start") >= stopped_at + std::int64_t{ttl} * 1'000'000'000 / 2);
  std::printf(
      "lock-exec lost: SIGCONT -> command's SIGTERM %.1f ms; B's command started %.1f ms after "
      "the SIGSTOP (TTL %d s), %.1f ms before the SIGCONT; reason %s\n",
      ms(term_after_cont), ms(bm.at("start") - stopped_at), ttl, ms(continued_at - bm.at("start")),
      reason.c_str());
  CHECK(keys_under(name).empty());
}

TEST_CASE("etcd frozen past the TTL: the command is stopped at the lease's local deadline",
          "[lock-exec][freeze]") {
  // Its own one-member etcd, SIGSTOPped while A's command runs and B waits in line: nothing
  // answers A's renewals, so A must stop its command on its own clock, before etcd could let B
  // in; B's command starts only after etcd runs again and A's lease has expired.
  constexpr int ttl = 2;
  auto etcd = election::test::EtcdCluster::start(work_dir("freeze-etcd"), 1);
  const auto endpoints = endpoint_list(etcd.endpoints());
  const auto dir = work_dir("freeze");
  const auto name = election::test::unique_name("lock-exec-freeze");
  LockExec a("a", dir, flags(name, ttl, endpoints), marking_command(dir / "a.txt", 30));
  REQUIRE(poll([&] { return marks(dir / "a.txt").count("start") != 0; }, 10s));
  // B's lease outlives the freeze (a lease lost while waiting in line ends lock-exec: it says
  // so and exits 1, the command never run).
  LockExec b("b", dir, flags(name, 10, endpoints), marking_command(dir / "b.txt", 0.2));
  REQUIRE(poll([&] { return keys_under(name, etcd.endpoint(0)).size() == 2; }, 5s));

  std::int64_t frozen_at = 0, thawed_at = 0;
  {
    election::test::Frozen frozen(etcd.pid(0));
    frozen_at = wall_ns();
    std::this_thread::sleep_for(std::chrono::seconds(ttl) + 1500ms);
    // While etcd is still frozen: A has stopped its command and said why.
    INFO(a.all_output());
    CHECK(marks(dir / "a.txt").count("term") == 1);
    thawed_at = wall_ns();
  }
  REQUIRE(a.process().wait_for(10s));
  REQUIRE(b.process().wait_for(15s));
  INFO(a.all_output() << "\n" << b.all_output());
  CHECK(a.process().wait() == 3);
  CHECK(b.process().wait() == 0);
  const auto lost = a.events("lost");
  REQUIRE(lost.size() == 1);
  CHECK(lost[0].str("reason") == "deadline-passed");
  const auto am = marks(dir / "a.txt"), bm = marks(dir / "b.txt");
  REQUIRE(am.count("term") == 1);
  REQUIRE(bm.count("start") == 1);
  // A's command got SIGTERM within the TTL of the freeze (at the deadline, TTL - margin, from
  // its last answered renewal), and B's started after the thaw.
  CHECK(am.at("term") < frozen_at + std::int64_t{ttl} * 1'000'000'000);
  CHECK(am.at("term") < thawed_at);
  CHECK(bm.at("start") > thawed_at);
  std::printf(
      "lock-exec, etcd frozen: command's SIGTERM %.1f ms after the freeze (TTL %d s); B's "
      "command started %.1f ms after the thaw\n",
      ms(am.at("term") - frozen_at), ttl, ms(bm.at("start") - thawed_at));
  CHECK(poll([&] { return keys_under(name, etcd.endpoint(0)).empty(); }, 5s));
}

TEST_CASE("json lines: one object a line, the events and their fields in order", "[lock-exec]") {
  const auto dir = work_dir("json");
  const auto name = election::test::unique_name("lock-exec-json");
  LockExec run("json", dir, flags(name), {"sh", "-c", "exit 0"});
  REQUIRE(run.process().wait_for(15s));
  INFO(run.all_output());
  CHECK(run.process().wait() == 0);
  const auto events = run.events();  // throws on a line that is not a flat JSON object
  std::vector<std::string> names;
  std::int64_t last = 0;
  for (const auto& e : events) {
    names.push_back(e.event());
    CHECK(e.str("name") == name);
    CHECK(e.mono_us() >= last);
    last = e.mono_us();
  }
  CHECK(names == std::vector<std::string>{"locked", "child-started", "child-exited", "group-exited",
                                          "unlocked"});
  REQUIRE(events.size() == 5);
  CHECK(events[0].str("key").rfind(name + "/", 0) == 0);
  CHECK(events[0].num("revision") > 0);
  CHECK(events[0].num("lease") > 0);
  CHECK(events[0].num("ttl") == 3);
  CHECK(events[1].num("pid") > 0);
  CHECK(events[1].num("pgid") == events[1].num("pid"));  // the leader of a group of its own
  CHECK(events[1].str("command") == "sh");
  CHECK(events[2].num("pid") == events[1].num("pid"));
  CHECK(events[2].num("code") == 0);
  CHECK(!events[2].has("signal"));
  CHECK(events[3].num("pgid") == events[1].num("pid"));
}

TEST_CASE("SIGTERM: passed on to the command, or ends the wait in line", "[lock-exec]") {
  const auto dir = work_dir("signal");
  const auto name = election::test::unique_name("lock-exec-signal");
  LockExec a("a", dir, flags(name), marking_command(dir / "a.txt", 30));
  REQUIRE(poll([&] { return marks(dir / "a.txt").count("start") != 0; }, 10s));
  LockExec b("b", dir, flags(name), marking_command(dir / "b.txt", 0.1));
  REQUIRE(poll([&] { return keys_under(name).size() == 2; }, 5s));  // B waits in line

  b.process().signal(SIGTERM);
  REQUIRE(b.process().wait_for(5s));
  CHECK(b.process().wait() == 143);
  CHECK(marks(dir / "b.txt").empty());  // B's command never ran
  CHECK(keys_under(name).size() == 1);  // B left the queue

  a.process().signal(SIGTERM);
  REQUIRE(a.process().wait_for(5s));
  INFO(a.all_output());
  CHECK(a.process().wait() == 143);  // the command's code: its trap exits 143
  CHECK(marks(dir / "a.txt").count("term") == 1);
  CHECK(a.events("unlocked").size() == 1);
  CHECK(keys_under(name).empty());
}

TEST_CASE("bad input and an unreachable etcd: a message and a non-zero exit", "[lock-exec]") {
  const auto dir = work_dir("bad");
  struct Case {
    std::string label;
    std::vector<std::string> args;
    int code;
    std::string says;
  };
  const std::vector<Case> cases{
      {"no-command", {ELECTION_LOCK_EXEC, "--endpoints", endpoint_list(), "lock"}, 2, "no command"},
      {"empty-command", {ELECTION_LOCK_EXEC, "lock", "--"}, 2, "no command"},
      {"empty-name", {ELECTION_LOCK_EXEC, "", "--", "true"}, 2, "NAME must not be empty"},
      {"no-name", {ELECTION_LOCK_EXEC}, 2, "NAME"},
      {"empty-member",
       {ELECTION_LOCK_EXEC, "--endpoints", "127.0.0.1:1,,127.0.0.1:2", "lock", "--", "true"},
       2,
       "empty member"},
      {"ttl-0", {ELECTION_LOCK_EXEC, "--ttl", "0", "lock", "--", "true"}, 2, "--ttl"},
      {"user-without-password",
       {ELECTION_LOCK_EXEC, "--user", "u", "lock", "--", "true"},
       2,
       "LOCK_EXEC_PASSWORD"},
  };
  for (const auto& c : cases) {
    ChildProcess p(c.args, dir / (c.label + ".out"));
    REQUIRE(p.wait_for(5s));
    const auto err = read_text(dir / (c.label + ".out.err"));
    INFO(c.label << ": " << err);
    CHECK(p.wait() == c.code);
    CHECK(err.find(c.says) != std::string::npos);
    CHECK(err.rfind("lock-exec: ", 0) == 0);
  }

  // Port 1 on loopback: nothing listens there.
  const auto started = std::chrono::steady_clock::now();
  ChildProcess p({ELECTION_LOCK_EXEC, "--endpoints", "127.0.0.1:1", "lock", "--", "true"},
                 dir / "unreachable.out");
  REQUIRE(p.wait_for(10s));
  const auto took = std::chrono::steady_clock::now() - started;
  const auto err = read_text(dir / "unreachable.out.err");
  INFO(err);
  CHECK(p.wait() == 1);
  CHECK(err.find("cannot reach etcd at 127.0.0.1:1") != std::string::npos);
  CHECK(took < 6s);
}

TEST_CASE("help explains the flags and exits 0", "[lock-exec]") {
  const auto dir = work_dir("help");
  ChildProcess p({ELECTION_LOCK_EXEC, "--help"}, dir / "help.out");
  REQUIRE(p.wait_for(5s));
  CHECK(p.wait() == 0);
  const auto text = p.output();
  for (const char* word : {"--endpoints", "--ttl", "--kill-after", "--cacert", "--cert", "--key",
                           "--user", "--password-file", "LOCK_EXEC_PASSWORD", "ETCD_LOCK_KEY",
                           "ETCD_LOCK_REV", "ETCD_LOCK_FENCE", "--takeover-delay", "--json"})
    CHECK(text.find(word) != std::string::npos);
}

TEST_CASE("the lost command gets --kill-after between SIGTERM and SIGKILL", "[lock-exec]") {
  // A command that ignores SIGTERM: the default --kill-after is 100 ms (half the takeover
  // delay); 300 ms here (lock-exec warns that it is past the bound; no other holder here).
  constexpr int ttl = 2;
  const auto dir = work_dir("kill-after");
  const auto name = election::test::unique_name("lock-exec-kill-after");
  auto args = flags(name, ttl);
  args.insert(args.begin(), {"--kill-after", "300"});
  LockExec a("a", dir, args,
             {"sh", "-c",
              "trap 'echo term $(date +%s%N) >> \"$1\"' TERM; echo start $(date +%s%N) >> "
              "\"$1\"; while :; do sleep 0.05; done",
              "sh", (dir / "a.txt").string()});
  REQUIRE(poll([&] { return marks(dir / "a.txt").count("start") != 0; }, 10s));
  a.process().signal(SIGSTOP);
  std::this_thread::sleep_for(std::chrono::seconds(ttl) + 500ms);
  const auto continued_at = wall_ns();
  a.process().signal(SIGCONT);
  REQUIRE(a.process().wait_for(10s));
  INFO(a.all_output());
  CHECK(a.process().wait() == 3);
  const auto lost = a.events("lost"), killed = a.events("killed"),
             exited = a.events("child-exited");
  REQUIRE(lost.size() == 1);
  REQUIRE(killed.size() == 1);
  REQUIRE(exited.size() == 1);
  const auto grace_us = killed[0].mono_us() - lost[0].mono_us();
  CHECK(grace_us >= 300'000);
  CHECK(grace_us < 600'000);
  CHECK(exited[0].num("code") == 137);
  CHECK(exited[0].str("signal") == "SIGKILL");
  const auto am = marks(dir / "a.txt");
  REQUIRE(am.count("term") == 1);
  std::printf(
      "lock-exec kill-after: SIGCONT -> SIGTERM seen by the command %.1f ms, SIGTERM -> "
      "SIGKILL %.1f ms (--kill-after 300)\n",
      ms(am.at("term") - continued_at), static_cast<double>(grace_us) / 1e3);
}

namespace {

// One line of /proc/PID/stat, the fields these tests need. `start` (field 22, in clock ticks
// since boot) tells a process from a later one that got its pid.
struct ProcStat {
  pid_t pid = 0;
  std::string comm;
  char state = '?';
  pid_t ppid = 0;
  pid_t pgrp = 0;
  std::uint64_t start = 0;
};

std::optional<ProcStat> parse_stat(const std::string& line) {
  // "PID (COMM) STATE PPID PGRP ...": COMM may hold blanks and parentheses, so the fields
  // after it are counted from its last ')'.
  const auto open = line.find('('), close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return {};
  ProcStat out;
  out.pid = static_cast<pid_t>(std::atoll(line.substr(0, open).c_str()));
  out.comm = line.substr(open + 1, close - open - 1);
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  if (fields.size() < 20 || out.pid <= 0) return {};
  out.state = fields[0].front();
  out.ppid = static_cast<pid_t>(std::atoll(fields[1].c_str()));
  out.pgrp = static_cast<pid_t>(std::atoll(fields[2].c_str()));
  out.start = std::stoull(fields[19]);
  return out;
}

std::optional<ProcStat> proc_stat(pid_t pid) {
  const auto line = read_text("/proc/" + std::to_string(pid) + "/stat");
  if (line.empty()) return {};
  return parse_stat(line);
}

// Running, or stopped: anything but a zombie (exited, not yet reaped) or gone.
bool alive(const ProcStat& seen) { return seen.state != 'Z' && seen.state != 'X'; }

// The same process as `p` (not a later one with its pid), still alive.
bool still_alive(const ProcStat& p) {
  const auto now = proc_stat(p.pid);
  return now && now->start == p.start && alive(*now);
}

std::vector<ProcStat> children_of(pid_t parent) {
  std::vector<ProcStat> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto seen = proc_stat(static_cast<pid_t>(std::atoll(name.c_str())));
    if (seen && seen->ppid == parent) out.push_back(*seen);
  }
  return out;
}

// The processes a test saw in a lock-exec's command; whatever of them is still alive when the
// test ends is SIGKILLed, by pid, checked against its start time (a lock-exec that leaves
// them behind must not leave them running after the test).
struct CommandTree {
  std::vector<ProcStat> processes;

  CommandTree() = default;
  CommandTree(const CommandTree&) = delete;
  CommandTree& operator=(const CommandTree&) = delete;
  ~CommandTree() {
    for (const auto& p : processes)
      if (still_alive(p)) ::kill(p.pid, SIGKILL);
  }

  std::string describe() const {
    std::string out;
    for (const auto& p : processes)
      out += (out.empty() ? "" : ", ") + std::to_string(p.pid) + " (" + p.comm + ", pgrp " +
             std::to_string(p.pgrp) + ")";
    return out;
  }
  // "PID START" lines, as the checking command reads them.
  void write(const std::filesystem::path& file) const {
    std::ofstream out(file);
    for (const auto& p : processes) out << p.pid << ' ' << p.start << '\n';
  }
};

// The shell that wrote its $$ to `pid_file`, and the one child named `child` it forked.
void find_tree(const std::filesystem::path& pid_file, const std::string& child, CommandTree& tree) {
  pid_t shell = 0;
  REQUIRE(poll(
      [&] {
        shell = static_cast<pid_t>(std::atoll(read_text(pid_file).c_str()));
        return shell > 0;
      },
      10s));
  std::vector<ProcStat> children;
  REQUIRE(poll(
      [&] {
        children = children_of(shell);
        return children.size() == 1 && children[0].comm == child;
      },
      5s));
  const auto sh = proc_stat(shell);
  REQUIRE(sh);
  tree.processes = {*sh, children[0]};
}

// A command that, before it marks its start in $1, looks up each process listed in $2 ("PID
// START" lines) and records what /proc says of it at that moment ("alive STAT-LINE"): the
// check runs inside the next holder's command, after lock-exec has started it, so whatever it
// finds alive of the first command's tree was alive while the next command ran.
std::vector<std::string> checking_command(const std::filesystem::path& file,
                                          const std::filesystem::path& tree) {
  return {"sh",
          "-c",
          "while read -r p t; do echo checked $p >> \"$1\"; "
          "s=$(cat /proc/$p/stat 2>/dev/null) && echo \"alive $s\" >> \"$1\"; done < \"$2\"; "
          "echo start $(date +%s%N) >> \"$1\"",
          "sh",
          file.string(),
          tree.string()};
}

// What the checking command found: the processes of `tree` it saw alive, how many it checked,
// and its start mark (0 if none).
struct Overlap {
  std::vector<ProcStat> alive;
  int checked = 0;
  std::int64_t started = 0;
};

Overlap overlap(const std::filesystem::path& file, const CommandTree& tree) {
  Overlap out;
  std::istringstream in(read_text(file));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("checked ", 0) == 0) ++out.checked;
    if (line.rfind("start ", 0) == 0) out.started = std::atoll(line.c_str() + 6);
    if (line.rfind("alive ", 0) != 0) continue;
    const auto seen = parse_stat(line.substr(6));
    if (!seen || !alive(*seen)) continue;
    for (const auto& p : tree.processes)
      if (p.pid == seen->pid && p.start == seen->start) out.alive.push_back(*seen);
  }
  return out;
}

std::string etcdctl(const std::string& args) {
  const auto command = "ETCDCTL_API=3 etcdctl --command-timeout=3s --endpoints=" +
                       election::test::fixture_endpoints().front() + " " + args;
  std::FILE* out = ::popen(command.c_str(), "r");
  REQUIRE(out != nullptr);
  std::string text;
  char chunk[1024];
  while (std::fgets(chunk, sizeof chunk, out) != nullptr) text += chunk;
  REQUIRE(::pclose(out) == 0);
  return text;
}

// A's command is `sh -c '...; sleep 30; true'` (the `true` keeps dash from exec'ing the sleep:
// the shell forks it and waits); B waits in line with the checking command. `stop` ends A's
// hold (a signal to lock-exec A, or its key deleted); then no process of A's command may be
// alive when B's command starts, nor after lock-exec A has exited.
void check_tree_gone(const std::string& label, const std::string& a_script,
                     const std::function<void(LockExec& a, const std::string& key)>& stop,
                     int a_code) {
  const auto dir = work_dir(label);
  const auto name = election::test::unique_name("lock-exec-" + label);
  CommandTree tree;
  LockExec a("a", dir, flags(name, 10),
             {"sh", "-c", "echo $$ > \"$1\"; " + a_script, "sh", (dir / "a.pid").string()});
  find_tree(dir / "a.pid", "sleep", tree);
  tree.write(dir / "tree.txt");
  LockExec b("b", dir, flags(name, 10), checking_command(dir / "b.txt", dir / "tree.txt"));
  REQUIRE(poll([&] { return keys_under(name).size() == 2; }, 5s));  // B waits in line
  REQUIRE(a.events("locked").size() == 1);

  const auto stopped_at = wall_ns();
  stop(a, a.events("locked")[0].str("key"));
  REQUIRE(a.process().wait_for(10s));
  REQUIRE(b.process().wait_for(10s));
  INFO("A's command: " << tree.describe() << "\n"
                       << a.all_output() << "\n"
                       << b.all_output() << "\nB's check:\n"
                       << read_text(dir / "b.txt"));
  CHECK(a.process().wait() == a_code);
  CHECK(b.process().wait() == 0);
  const auto seen = overlap(dir / "b.txt", tree);
  REQUIRE(seen.started != 0);
  CHECK(seen.checked == 2);
  std::string overlapping;
  for (const auto& p : seen.alive)
    overlapping += std::to_string(p.pid) + " (" + p.comm + ", ppid " + std::to_string(p.ppid) +
                   ", state " + p.state + ") ";
  INFO("alive when B's command started: " << overlapping);
  CHECK(seen.alive.empty());
  std::string left;
  for (const auto& p : tree.processes)
    if (still_alive(p)) left += std::to_string(p.pid) + " (" + p.comm + ") ";
  INFO("alive after lock-exec A exited: " << left);
  CHECK(left.empty());
  std::printf(
      "lock-exec %s: B's command started %.1f ms after the stop; of A's command %s, "
      "alive then: %s\n",
      label.c_str(), ms(seen.started - stopped_at), tree.describe().c_str(),
      overlapping.empty() ? "none" : overlapping.c_str());
  CHECK(keys_under(name).empty());
}

}  // namespace

TEST_CASE("SIGTERM to lock-exec: no process of the command's tree outlives the hold",
          "[lock-exec][group]") {
  check_tree_gone(
      "tree-sigterm", "sleep 30; true",
      [](LockExec& a, const std::string&) { a.process().signal(SIGTERM); }, 143);
}

// The command's group is not a terminal's foreground group, so a hangup reaches lock-exec
// alone: it passes it on, as SIGINT and SIGTERM.
TEST_CASE("SIGHUP to lock-exec: passed on, no process of the command's tree outlives the hold",
          "[lock-exec][group]") {
  check_tree_gone(
      "tree-sighup", "sleep 30; true",
      [](LockExec& a, const std::string&) { a.process().signal(SIGHUP); }, 129);
}

TEST_CASE("lock-exec started with SIGHUP ignored (nohup): the hangup changes nothing",
          "[lock-exec]") {
  const auto dir = work_dir("nohup");
  const auto name = election::test::unique_name("lock-exec-nohup");
  std::vector<std::string> args{"sh", "-c", "trap '' HUP; exec \"$@\"", "sh", ELECTION_LOCK_EXEC};
  const auto more = flags(name);
  args.insert(args.end(), more.begin(), more.end());
  args.push_back("--");
  const auto command = marking_command(dir / "a.txt", 30);
  args.insert(args.end(), command.begin(), command.end());
  ChildProcess a(args, dir / "a.jsonl");
  REQUIRE(poll([&] { return marks(dir / "a.txt").count("start") != 0; }, 10s));
  a.signal(SIGHUP);
  std::this_thread::sleep_for(300ms);
  INFO(a.output() << "\nstderr:\n" << read_text(dir / "a.jsonl.err"));
  CHECK(!a.wait_for(0ms));                  // lock-exec runs on
  CHECK(marks(dir / "a.txt").size() == 1);  // and so does its command: no term, no end
  a.signal(SIGTERM);
  REQUIRE(a.wait_for(5s));
  CHECK(a.wait() == 143);
  CHECK(marks(dir / "a.txt").count("term") == 1);
  CHECK(keys_under(name).empty());
}

TEST_CASE("the key deleted: no process of the command's tree outlives the hold",
          "[lock-exec][group]") {
  const auto del = [](LockExec&, const std::string& key) { etcdctl("del '" + key + "'"); };
  SECTION("the command's processes end on SIGTERM") {
    check_tree_gone("tree-del", "sleep 30; true", del, 3);
  }
  SECTION("the command's processes ignore SIGTERM: the SIGKILL comes within the takeover delay") {
    // `trap '' TERM`: ignored in the shell, and so in the sleep it starts. Only the SIGKILL,
    // --kill-after (100 ms) after the loss, ends them; B waits the takeover delay (200 ms)
    // after the deletion, which it sees about when A does.
    check_tree_gone("tree-del-ignored", "trap '' TERM; sleep 30; true", del, 3);
  }
}

// lock-exec A (TTL 10 s) is SIGSTOPped right after a renewal and SIGCONTed after its local
// deadline (the last answered renewal's send + TTL - 1 s) but about 0.5 s before etcd would
// expire its lease: A finds its hold ended at the deadline, and its key still in etcd. A's
// command takes 150 ms to exit on SIGTERM; B waits in line. B's command may start only after
// A's command has exited: A releases the lock only then, and a release after a loss is not
// signed, so B waits the takeover delay on top.
//
// The moment of the renewal is read from etcd: `lease timetolive` every few ms until the
// remaining TTL goes up. The renewal reached etcd after the previous read started and before
// this one ended; both bounds are a few tens of ms apart (else the test waits for the next
// renewal). So etcd expires the lease no earlier than that first bound + TTL, and A's deadline
// passed no later than the second + TTL - 1 s: SIGCONT at the first + TTL - 0.5 s lands
// between them. The order of the marks is the order of their lines in one file (O_APPEND), not
// their clocks.
//
// Needs the library's kept key after a loss (unlock() then removes it unsigned): before it, A's
// hold ended at the deadline signs its resignation at once and B starts about 20 ms after
// SIGCONT, while A's command runs on for 150 ms.
TEST_CASE("lock-exec frozen past its deadline, not its lease's expiry: B starts after A's command",
          "[lock-exec][deadline]") {
  constexpr int ttl = 10;
  using Steady = std::chrono::steady_clock;
  const auto dir = work_dir("deadline");
  const auto name = election::test::unique_name("lock-exec-deadline");
  const auto file = dir / "marks.txt";
  // --kill-after 400: the command needs 150 ms to exit, past the default 100 ms (lock-exec
  // warns that 400 ms breaks the bound for removals by others; none happens here).
  auto a_flags = flags(name, ttl);
  a_flags.insert(a_flags.begin(), {"--kill-after", "400"});
  CommandTree command;  // A's shell: whatever happens to lock-exec A, it does not outlive the test
  LockExec a("a", dir, a_flags,
             {"sh", "-c",
              "trap 'echo A-term $(date +%s%N) >> \"$1\"; sleep 0.15; "
              "echo A-exit $(date +%s%N) >> \"$1\"; exit 143' TERM; "
              "echo A-start $(date +%s%N) >> \"$1\"; while :; do sleep 0.05; done",
              "sh", file.string()});
  REQUIRE(poll([&] { return marks(file).count("A-start") != 0; }, 10s));
  REQUIRE(a.events("child-started").size() == 1);
  const auto shell = proc_stat(static_cast<pid_t>(a.events("child-started")[0].num("pid")));
  REQUIRE(shell);
  command.processes = {*shell};
  LockExec b("b", dir, flags(name, ttl),
             {"sh", "-c", "echo B-start $(date +%s%N) >> \"$1\"", "sh", file.string()});
  REQUIRE(poll([&] { return keys_under(name).size() == 2; }, 5s));  // B waits in line
  REQUIRE(a.events("locked").size() == 1);
  const auto lease = hex(a.events("locked")[0].num("lease"));

  const auto remaining = [&] {
    const auto text = etcdctl("lease timetolive " + lease);
    // "lease ID granted with TTL(10s), remaining(9s)"
    const auto at = text.find("remaining(");
    INFO(text);
    REQUIRE(at != std::string::npos);
    return std::atol(text.c_str() + at + std::strlen("remaining("));
  };
  std::optional<long> before;
  Steady::time_point before_started{}, renewed_after{}, renewed_by{};
  const auto give_up = Steady::now() + 3 * std::chrono::seconds(ttl);
  while (Steady::now() < give_up) {
    const auto started = Steady::now();
    const auto left = remaining();
    const auto ended = Steady::now();
    if (before && left > *before && ended - before_started < 300ms) {
      renewed_after = before_started;
      renewed_by = ended;
      break;
    }
    before = left;
    before_started = started;
  }
  REQUIRE(renewed_by != Steady::time_point{});
  a.process().signal(SIGSTOP);
  const auto stopped_at = wall_ns();
  const auto continue_at = renewed_after + std::chrono::seconds(ttl) - 500ms;
  // A's deadline (renewal + TTL - 1 s) is behind SIGCONT by at least 200 ms.
  REQUIRE(renewed_by + std::chrono::seconds(ttl) - 1s + 200ms < continue_at);
  std::this_thread::sleep_until(continue_at);
  const auto continued_at = wall_ns();
  a.process().signal(SIGCONT);

  REQUIRE(a.process().wait_for(10s));
  REQUIRE(b.process().wait_for(15s));
  INFO(a.all_output() << "\n" << b.all_output() << "\nmarks:\n" << read_text(file));
  CHECK(a.process().wait() == 3);
  CHECK(b.process().wait() == 0);
  const auto lost = a.events("lost");
  REQUIRE(lost.size() == 1);
  CHECK(lost[0].str("reason") == "deadline-passed");  // else the schedule was missed
  std::vector<std::string> order;
  std::istringstream lines(read_text(file));
  for (std::string what, ns; lines >> what >> ns;) order.push_back(what);
  const auto at = [&](const std::string& what) {
    return std::find(order.begin(), order.end(), what) - order.begin();
  };
  const auto m = marks(file);
  REQUIRE(m.count("A-term") == 1);
  REQUIRE(m.count("A-exit") == 1);
  REQUIRE(m.count("B-start") == 1);
  std::printf(
      "lock-exec deadline: frozen %.1f ms (renewal seen within %.1f ms); after SIGCONT: A-term "
      "%.1f ms, A-exit %.1f ms, B-start %.1f ms\n",
      ms(continued_at - stopped_at),
      std::chrono::duration<double, std::milli>(renewed_by - renewed_after).count(),
      ms(m.at("A-term") - continued_at), ms(m.at("A-exit") - continued_at),
      ms(m.at("B-start") - continued_at));
  CHECK(at("B-start") > at("A-exit"));
  CHECK(keys_under(name).empty());
}

TEST_CASE("help: the process group, who leaves it, the bound: a --kill-after past it warns",
          "[lock-exec]") {
  const auto dir = work_dir("bound");
  ChildProcess help({ELECTION_LOCK_EXEC, "--help"}, dir / "help.out");
  REQUIRE(help.wait_for(5s));
  CHECK(help.wait() == 0);
  const auto text = help.output();
  std::string missing;
  for (const char* words :
       {"--takeover-delay", "process group of its own", "setsid", "reaches lock-exec only",
        "the group is empty", "--kill-after < --takeover-delay", "unless lock-exec itself"})
    if (text.find(words) == std::string::npos)
      missing += std::string(missing.empty() ? "" : ", ") + "\"" + words + "\"";
  INFO(text);
  CHECK(missing == "");
  CHECK(text.find("one process group") == std::string::npos);

  const auto name = election::test::unique_name("lock-exec-bound");
  struct Case {
    std::string label;
    std::vector<std::string> flags;
    bool warns;
  };
  const std::vector<Case> cases{
      {"default", {}, false},
      {"kill-after-below", {"--kill-after", "150"}, false},
      {"kill-after-equal", {"--kill-after", "200"}, true},
      {"kill-after-above", {"--kill-after", "400"}, true},
      {"takeover-delay-only", {"--takeover-delay", "50"}, false},
      {"takeover-delay-below", {"--takeover-delay", "100", "--kill-after", "150"}, true},
      {"takeover-delay-0", {"--takeover-delay", "0"}, true},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{ELECTION_LOCK_EXEC, "--endpoints", endpoint_list()};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    args.insert(args.end(), {name, "--", "true"});
    ChildProcess p(args, dir / (c.label + ".out"));
    REQUIRE(p.wait_for(10s));
    const auto err = read_text(dir / (c.label + ".out.err"));
    INFO(c.label << ": " << err);
    CHECK(p.wait() == 0);  // accepted, and run
    CHECK((err.find("warning") != std::string::npos) == c.warns);
    if (c.warns) CHECK(err.find("--takeover-delay") != std::string::npos);
  }
}

// What lock-exec does when the command's main process exits and leaves a process of its group
// running (a background job, here one that ignores SIGTERM): the rest of the group gets
// SIGTERM, then SIGKILL --kill-after later, and the lock is released only when the group is
// empty. B waits in line meanwhile, with the checking command; lock-exec exits with the main
// process's code.
TEST_CASE("the main process exits, a process of its group runs on: stopped before the release",
          "[lock-exec][group]") {
  const auto dir = work_dir("leftover");
  const auto name = election::test::unique_name("lock-exec-leftover");
  const auto go = dir / "go";
  CommandTree tree;
  auto a_flags = flags(name, 10);
  a_flags.insert(a_flags.begin(), {"--kill-after", "150"});
  // The subshell ignores SIGTERM and execs the sleep (so $! is the sleep's pid); the main shell
  // exits 5 once the test says go.
  LockExec a("a", dir, a_flags,
             {"sh", "-c",
              "(trap '' TERM; exec sleep 30) & echo $! > \"$1\"; "
              "while [ ! -e \"$2\" ]; do sleep 0.02; done; exit 5",
              "sh", (dir / "a.pid").string(), go.string()});
  std::optional<ProcStat> leftover;
  REQUIRE(poll(
      [&] {
        const auto pid = static_cast<pid_t>(std::atoll(read_text(dir / "a.pid").c_str()));
        leftover = pid > 0 ? proc_stat(pid) : std::nullopt;
        return leftover && leftover->comm == "sleep";
      },
      10s));
  tree.processes = {*leftover};
  tree.write(dir / "tree.txt");
  LockExec b("b", dir, flags(name, 10), checking_command(dir / "b.txt", dir / "tree.txt"));
  REQUIRE(poll([&] { return keys_under(name).size() == 2; }, 5s));  // B waits in line

  std::ofstream(go.string()).put('\n');
  REQUIRE(a.process().wait_for(10s));
  REQUIRE(b.process().wait_for(10s));
  INFO(a.all_output() << "\n" << b.all_output() << "\nB's check:\n" << read_text(dir / "b.txt"));
  CHECK(a.process().wait() == 5);
  CHECK(b.process().wait() == 0);
  const auto seen = overlap(dir / "b.txt", tree);
  REQUIRE(seen.started != 0);
  CHECK(seen.checked == 1);
  CHECK(seen.alive.empty());
  CHECK(!still_alive(tree.processes[0]));
  const auto events = a.events();
  std::vector<std::string> names;
  for (const auto& e : events) names.push_back(e.event());
  CHECK(names == std::vector<std::string>{"locked", "child-started", "child-exited",
                                          "group-running", "killed", "group-exited", "unlocked"});
  const auto exited = a.events("child-exited"), killed = a.events("killed");
  REQUIRE(exited.size() == 1);
  REQUIRE(killed.size() == 1);
  CHECK(exited[0].num("code") == 5);
  CHECK(killed[0].num("pgid") == a.events("child-started").at(0).num("pid"));
  const auto grace_us = killed[0].mono_us() - exited[0].mono_us();
  CHECK(grace_us >= 150'000);
  CHECK(grace_us < 1'000'000);
  CHECK(a.err().empty());
  std::printf(
      "lock-exec leftover: SIGKILL %.1f ms after the main process exited (--kill-after "
      "150); B's command found it gone\n",
      static_cast<double>(grace_us) / 1e3);
  CHECK(keys_under(name).empty());
}
