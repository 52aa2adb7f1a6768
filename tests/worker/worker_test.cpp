// leader-worker as a user runs it: separate processes against the etcd fixture, judged only by
// their --json output, their exit codes and the time things took.
#include "support/etcd_cluster.hpp"
#include "support/names.hpp"
#include "support/process.hpp"
#include "worker/json_lines.hpp"
#include "worker/worker_process.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

using namespace std::chrono_literals;
using election::test::ChildProcess;
using election::test::WorkerEvent;
using Clock = std::chrono::steady_clock;

namespace {

using namespace worker_test;

bool accepted(const WorkerEvent& e) { return e.flag("ok"); }

struct Term {
  std::string node;
  std::int64_t start = 0;
  std::int64_t end = 0;
  std::int64_t rev = 0;
};

// Checks one node's whole output and returns its terms of leadership: each from `elected` to
// the earliest of its next `lost` or `resigned`, the `deadline_us` of that `lost`, and, for a
// node that was SIGKILLed (killed_at_us > 0), the kill.
std::vector<Term> check_node_history(const Worker& worker, std::int64_t killed_at_us) {
  static const std::vector<std::string> known{
      "etcd",           "stream",       "campaigning",  "elected", "work",
      "work-cancelled", "work-stopped", "work-overran", "lost",    "resigned",
      "leader",         "no-leader",    "error"};
  const auto events = worker.events();
  INFO("node " << worker.node() << ", output:\n" << worker.process().output());
  std::vector<Term> terms;
  std::optional<Term> open;
  std::vector<WorkerEvent> accepted_work;
  std::int64_t last_mono = 0, last_seq = 0;
  for (const auto& e : events) {
    CHECK(std::find(known.begin(), known.end(), e.event()) != known.end());
    CHECK(e.node() == worker.node());
    CHECK(e.mono_us() >= last_mono);
    last_mono = e.mono_us();
    const auto name = e.event();
    if (name == "elected") {
      CHECK_FALSE(open);
      CHECK(e.num("rev") > 0);
      CHECK(e.num("ttl") >= ttl_s);
      open = Term{worker.node(), e.mono_us(), 0, e.num("rev")};
    } else if (name == "lost" || name == "resigned") {
      if (name == "lost") REQUIRE(open);
      if (open) {
        open->end = e.mono_us();
        if (e.has("deadline_us")) {
          CHECK(e.str("reason") == "deadline-passed");
          open->end = std::min(open->end, e.num("deadline_us"));
        }
        terms.push_back(*open);
        open.reset();
      }
    } else if (name == "work") {
      CHECK(e.num("seq") > last_seq);
      last_seq = e.num("seq");
      if (accepted(e)) {
        REQUIRE(open);  // an accepted write outside a term
        CHECK(e.num("fence") == open->rev);
        CHECK(e.num("rev") > open->rev);
        accepted_work.push_back(e);
      }
    }
  }
  if (open) {
    INFO("a term without its end: only a SIGKILLed node may have one");
    REQUIRE(killed_at_us > 0);
    open->end = killed_at_us;
    terms.push_back(*open);
  }
  // Every accepted write lies inside its term, deadline included.
  for (const auto& w : accepted_work) {
    const bool inside = std::any_of(terms.begin(), terms.end(), [&](const Term& t) {
      return t.rev == w.num("fence") && t.start <= w.mono_us() && w.mono_us() <= t.end;
    });
    INFO("accepted work outside the node's leadership: " << w.line);
    CHECK(inside);
  }
  return terms;
}

// One leader at a time: the terms of all nodes, ordered by start, do not overlap, and their
// fencing revisions grow.
void check_one_leader_at_a_time(std::vector<Term> terms) {
  std::sort(terms.begin(), terms.end(), [](auto& a, auto& b) { return a.start < b.start; });
  for (std::size_t i = 1; i < terms.size(); ++i) {
    INFO(terms[i - 1].node << " led [" << terms[i - 1].start << ", " << terms[i - 1].end << "], "
                           << terms[i].node << " from " << terms[i].start);
    CHECK(terms[i - 1].end < terms[i].start);
    CHECK(terms[i - 1].rev < terms[i].rev);
  }
}

struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
  std::chrono::milliseconds took{0};
};

Outcome run_worker(const std::vector<std::string>& args, const std::string& name,
                   std::chrono::milliseconds limit = 15s) {
  const auto dir = work_dir("bad-input");
  const auto start = Clock::now();
  Worker worker(name, args, dir);
  Outcome outcome;
  if (!worker.process().wait_for(limit)) {
    FAIL("leader-worker did not exit within " << limit.count() << " ms");
  }
  outcome.took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  outcome.code = worker.process().wait();
  outcome.out = worker.process().output();
  outcome.err = worker.stderr_text();
  return outcome;
}

std::size_t line_count(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

// What a failed wait needs to be understood: every worker's output, and what etcd logged last
// (a stalled etcd, e.g. on a loaded machine, explains most late elections).
std::string history(const std::vector<std::unique_ptr<Worker>>& workers) {
  std::ostringstream out;
  out << "now: mono_us " << now_us() << "\n";
  for (const auto& w : workers)
    out << "--- " << w->node() << " (stdout, then stderr)\n"
        << w->process().output() << w->stderr_text();
  try {
    const auto log = read_text(election::test::fixture_dir() / "m1.log");
    out << "--- etcd, last lines of its log\n" << election::test::detail::tail_lines(log, 15);
  } catch (const std::exception& e) {
    out << "--- no etcd log: " << e.what() << "\n";
  }
  return out.str();
}

}  // namespace

TEST_CASE("three workers: one leader at a time, failover after SIGKILL, handover after SIGTERM",
          "[worker]") {
  const auto election_name = election::test::unique_name("worker");
  const auto dir = work_dir("three-workers");
  std::vector<std::unique_ptr<Worker>> workers;
  for (const std::string node : {"a", "b", "c"})
    workers.push_back(std::make_unique<Worker>(node, worker_args(node, election_name), dir));
  auto elected = [&](Worker* except1, Worker* except2) -> Worker* {
    for (auto& w : workers)
      if (w.get() != except1 && w.get() != except2 && !w->events("elected").empty()) return w.get();
    return nullptr;
  };
  auto works = [](Worker& w, std::size_t n, std::int64_t after_us) {
    return poll(
        [&] {
          return w.events("work", [&](auto& e) {
                    return accepted(e) && e.mono_us() > after_us;
                  }).size() >= n;
        },
        5s);
  };

  // Someone leads; the others wait in line.
  Worker* first = nullptr;
  if (!poll([&] { return (first = elected(nullptr, nullptr)) != nullptr; }, 15s))
    FAIL("no worker was elected within 15 s\n" << history(workers));
  if (!works(*first, 2, 0)) FAIL(first->node() << " did not work twice\n" << history(workers));
  for (auto& w : workers) {
    INFO(w->node() << ":\n" << w->process().output());
    CHECK(w->events("campaigning").size() >= 1);
    if (w.get() != first) CHECK(w->events("elected").empty());
  }
  const auto granted_ttl_s = first->events("elected").front().num("ttl");
  // The takeover delay it chose, and why: Debian's etcd 3.4.23 lacks the stale-leader fix.
  for (auto& w : workers) {
    const auto etcd = w->events("etcd");
    REQUIRE(etcd.size() == 1);
    CHECK(etcd[0].str("version") == "3.4.23");
    CHECK(etcd[0].num("takeover_delay_ms") == 200);
    CHECK(etcd[0].str("takeover_delay_from") == "etcd-version");
  }

  // SIGKILL the leader: another takes over once etcd expires its lease, within the TTL.
  const auto killed_at = now_us();
  first->process().signal(SIGKILL);
  CHECK(first->process().wait() == 128 + SIGKILL);
  Worker* second = nullptr;
  if (!poll([&] { return (second = elected(first, nullptr)) != nullptr; },
            std::chrono::seconds(granted_ttl_s + 5)))
    FAIL("no failover within TTL + 5 s after the kill at mono_us " << killed_at << "\n"
                                                                   << history(workers));
  const auto failover_us = second->events("elected").front().mono_us() - killed_at;
  WARN("failover after SIGKILL: " << seconds(failover_us) << " s (TTL " << granted_ttl_s << " s)");
  CHECK(failover_us > 0);
  CHECK(failover_us <= (granted_ttl_s + 2) * 1'000'000);
  if (!works(*second, 2, killed_at))
    FAIL(second->node() << " did not work twice\n" << history(workers));

  // SIGTERM the new leader: it resigns, the third leads within a second, and it exits 0.
  const auto terminated_at = now_us();
  second->process().signal(SIGTERM);
  REQUIRE(second->process().wait_for(5s));
  const auto exit_us = now_us() - terminated_at;
  CHECK(second->process().wait() == 0);
  Worker* third = nullptr;
  if (!poll([&] { return (third = elected(first, second)) != nullptr; }, 5s))
    FAIL("no handover within 5 s after SIGTERM at mono_us " << terminated_at << "\n"
                                                            << history(workers));
  const auto handover_us = third->events("elected").front().mono_us() - terminated_at;
  WARN("handover after SIGTERM: " << seconds(handover_us) << " s; the old leader exited after "
                                  << seconds(exit_us) << " s");
  CHECK(handover_us > 0);
  CHECK(handover_us < 1'000'000);
  CHECK(exit_us < 1'000'000);
  CHECK(second->events("resigned").size() == 1);
  if (!works(*third, 1, terminated_at))
    FAIL(third->node() << " did not work\n" << history(workers));

  // The last one stops the same way.
  const auto last_at = now_us();
  third->process().signal(SIGTERM);
  REQUIRE(third->process().wait_for(5s));
  CHECK(now_us() - last_at < 1'000'000);
  CHECK(third->process().wait() == 0);
  CHECK(third->events("resigned").size() == 1);

  // Judge the whole history.
  std::vector<Term> terms;
  for (auto& w : workers) {
    const auto mine = check_node_history(*w, w.get() == first ? killed_at : 0);
    terms.insert(terms.end(), mine.begin(), mine.end());
    INFO(w->node() << " wrote on stderr");
    CHECK(w->stderr_text().empty());
  }
  CHECK(terms.size() == 3);
  check_one_leader_at_a_time(terms);

  // Accepted writes, all nodes together, are in etcd's order.
  std::vector<WorkerEvent> writes;
  for (auto& w : workers) {
    auto mine = w->events("work", accepted);
    writes.insert(writes.end(), mine.begin(), mine.end());
  }
  std::sort(writes.begin(), writes.end(),
            [](auto& a, auto& b) { return a.mono_us() < b.mono_us(); });
  for (std::size_t i = 1; i < writes.size(); ++i)
    CHECK(writes[i - 1].num("rev") < writes[i].num("rev"));

  // The third node watched the whole election: the leaders in order, never "no leader" between.
  std::vector<std::string> seen;
  bool no_leader_after_first = false;
  for (auto& e : third->events()) {
    if (e.event() == "leader" && (seen.empty() || seen.back() != e.str("value")))
      seen.push_back(e.str("value"));
    if (e.event() == "no-leader" && !seen.empty()) no_leader_after_first = true;
  }
  CHECK(seen == std::vector<std::string>{first->node(), second->node(), third->node()});
  CHECK_FALSE(no_leader_after_first);
}

TEST_CASE("a node name that needs escaping comes out as valid JSON, unchanged", "[worker]") {
  const auto election_name = election::test::unique_name("worker-escape");
  const std::string node = "we\"ird \\ n\xc3\xa4me\t\x01 \xe2\x82\xac";
  Worker worker("escape", worker_args(node, election_name), work_dir("escape"));
  // The observer reports the leader on its own schedule: wait for it as well as for work.
  REQUIRE(poll([&] { return !worker.events("work").empty() && !worker.events("leader").empty(); },
               15s));
  worker.process().signal(SIGTERM);
  REQUIRE(worker.process().wait_for(5s));
  CHECK(worker.process().wait() == 0);
  const auto events = worker.events();
  REQUIRE_FALSE(events.empty());
  for (auto& e : events) CHECK(e.node() == node);
  const auto leaders = worker.events("leader");
  REQUIRE_FALSE(leaders.empty());
  CHECK(leaders.back().str("value") == node);

  // Bytes that are not UTF-8 are replaced, so the line stays valid.
  const auto election_2 = election::test::unique_name("worker-escape");
  Worker invalid("bad", worker_args("bad\xff\xc3(", election_2), work_dir("escape-invalid"));
  REQUIRE(poll([&] { return !invalid.events("elected").empty(); }, 15s));
  invalid.process().signal(SIGTERM);
  REQUIRE(invalid.process().wait_for(5s));
  CHECK(invalid.process().wait() == 0);
  CHECK(invalid.events("elected").front().node() == "bad\xef\xbf\xbd\xef\xbf\xbd(");
}

TEST_CASE("bad input: one line on stderr and a non-zero exit", "[worker]") {
  SECTION("an unknown flag") {
    auto r = run_worker({"--node", "a", "--bogus"}, "unknown");
    CHECK(r.code == 2);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find("--bogus") != std::string::npos);
  }
  SECTION("no --node") {
    auto r = run_worker({"--port", "2379"}, "no-node");
    CHECK(r.code == 2);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find("--node") != std::string::npos);
  }
  SECTION("a port out of range") {
    auto r = run_worker({"--node", "a", "--port", "70000"}, "port");
    CHECK(r.code == 2);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find("70000") != std::string::npos);
  }
  SECTION("--host/--port together with --endpoints") {
    auto r = run_worker({"--node", "a", "--host", "127.0.0.1", "--endpoints", "127.0.0.1:2379"},
                        "exclusive");
    CHECK(r.code == 2);
    CHECK(line_count(r.err) == 1);
  }
  SECTION("an empty member in --endpoints, not dropped unsaid") {
    for (const auto* list : {"127.0.0.1:1,,127.0.0.1:2", "127.0.0.1:1,", ",127.0.0.1:1"}) {
      INFO(list);
      auto r = run_worker({"--node", "a", "--endpoints", list}, "empty-member");
      CHECK(r.code == 2);
      CHECK(line_count(r.err) == 1);
      CHECK(r.err.find("empty member") != std::string::npos);
      CHECK(r.took < 5s);
    }
  }
  SECTION("a TTL of 0") {
    auto r = run_worker({"--node", "a", "--ttl", "0"}, "ttl");
    CHECK(r.code == 2);
    CHECK(line_count(r.err) == 1);
  }
  SECTION("an election name etcd's election API cannot take") {
    auto r = run_worker({"--node", "a", "--endpoints", "127.0.0.1:1", "--election", "jobs/"},
                        "election-name");
    CHECK(r.code == 2);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find("jobs/") != std::string::npos);
  }
  SECTION("etcd unreachable: fails after the connect timeout, not a hang") {
    auto r = run_worker({"--node", "a", "--endpoints", "127.0.0.1:1"}, "unreachable");
    CHECK(r.code == 1);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find("127.0.0.1:1") != std::string::npos);
    CHECK(r.out.empty());
    CHECK(r.took < 10s);
  }
  SECTION("etcd unreachable with --json: an error event on stdout as well") {
    auto r = run_worker({"--node", "a", "--endpoints", "127.0.0.1:1", "--json"}, "unreachable");
    CHECK(r.code == 1);
    CHECK(line_count(r.err) == 1);
    const auto events = election::test::parse_worker_events(r.out);
    REQUIRE(events.size() == 1);
    CHECK(events[0].event() == "error");
    CHECK(events[0].str("message").find("127.0.0.1:1") != std::string::npos);
    CHECK(r.took < 10s);
  }
}

TEST_CASE("--help explains every flag and exits 0", "[worker]") {
  auto r = run_worker({"--help"}, "help");
  CHECK(r.code == 0);
  CHECK(r.err.empty());
  for (const char* flag : {"--node", "--host", "--port", "--endpoints", "--election", "--ttl",
                           "--json", "--metrics"}) {
    INFO(flag);
    CHECK(r.out.find(flag) != std::string::npos);
  }
}

TEST_CASE("SIGTERM before etcd is reached: exits 0 at once", "[worker]") {
  const auto dir = work_dir("early-term");
  Worker worker("a", {"--node", "a", "--endpoints", "127.0.0.1:1", "--json"}, dir);
  std::this_thread::sleep_for(1s);  // past start-up: the signal handlers are in place
  const auto start = Clock::now();
  worker.process().signal(SIGTERM);
  REQUIRE(worker.process().wait_for(5s));
  CHECK(Clock::now() - start < 1s);
  CHECK(worker.process().wait() == 0);
  CHECK(worker.stderr_text().empty());
}
