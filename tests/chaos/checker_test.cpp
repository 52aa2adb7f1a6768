// The chaos checker on hand-written runs: what must pass, and every rule failing once.
#include "checker.hpp"
#include "report.hpp"

#include <catch2/catch.hpp>

#include <initializer_list>
#include <string>

namespace {

using chaos::CheckInput;
using chaos::KvChange;
using chaos::WorkerRun;

constexpr std::int64_t s = 1'000'000;  // one second in microseconds

WorkerRun worker(const std::string& node, std::initializer_list<std::string> lines,
                 std::optional<std::int64_t> ended_us = std::nullopt) {
  WorkerRun run;
  run.node = node;
  run.ended_us = ended_us;
  for (const auto& body : lines) {
    const auto line = R"({"node":")" + node + R"(",)" + body + "}";
    run.events.push_back({election::test::parse_json_object(line), line});
  }
  return run;
}

std::string elected(std::int64_t t, std::int64_t rev) {
  return R"("event":"elected","mono_us":)" + std::to_string(t) + R"(,"key":"e/k","rev":)" +
         std::to_string(rev);
}
std::string lost(std::int64_t t, const std::string& reason,
                 std::optional<std::int64_t> deadline = std::nullopt) {
  return R"("event":"lost","mono_us":)" + std::to_string(t) + R"(,"reason":")" + reason + '"' +
         (deadline ? R"(,"deadline_us":)" + std::to_string(*deadline) : std::string());
}
std::string resigned(std::int64_t t) {
  return R"("event":"resigned","mono_us":)" + std::to_string(t);
}
std::string work(std::int64_t t, std::int64_t rev, std::int64_t seq, std::int64_t fence) {
  return R"("event":"work","mono_us":)" + std::to_string(t) + R"(,"rev":)" + std::to_string(rev) +
         R"(,"seq":)" + std::to_string(seq) + R"(,"ok":true,"fence":)" + std::to_string(fence);
}
std::string refused(std::int64_t t, std::int64_t seq) {
  return R"("event":"work","mono_us":)" + std::to_string(t) + R"(,"rev":0,"seq":)" +
         std::to_string(seq) +
         R"(,"ok":false,"fence":2,"error":"etcd refused the fenced write: not the leader")";
}

// What leader-worker's work says of its stop, and the library's overrun report.
std::string cancelled(std::int64_t t, std::int64_t rev, std::int64_t latency_ms) {
  return R"("event":"work-cancelled","mono_us":)" + std::to_string(t) + R"(,"rev":)" +
         std::to_string(rev) + R"(,"stop_latency_ms":)" + std::to_string(latency_ms);
}
std::string stopped(std::int64_t t, std::int64_t rev) {
  return R"("event":"work-stopped","mono_us":)" + std::to_string(t) + R"(,"rev":)" +
         std::to_string(rev) + R"(,"how":"cancelled")";
}
std::string overran(std::int64_t t, std::int64_t rev) {
  return R"("event":"work-overran","mono_us":)" + std::to_string(t) + R"(,"rev":)" +
         std::to_string(rev);
}

KvChange candidate(std::int64_t rev, const std::string& lease, const std::string& node) {
  return {rev, true, "e/" + lease, rev, node};
}
KvChange gone(std::int64_t rev, const std::string& lease) {
  return {rev, false, "e/" + lease, 0, {}};
}
KvChange counter(std::int64_t rev, const std::string& node, std::int64_t seq, std::int64_t fence) {
  return {rev, true, "e-counter", 0,
          R"({"node":")" + node + R"(","seq":)" + std::to_string(seq) + R"(,"fence":)" +
              std::to_string(fence) + "}"};
}

// a leads from 1 s to 5 s and resigns; b, in line since 2 s, leads from 5.1 s to 20 s.
CheckInput clean_handover() {
  CheckInput input;
  input.election = "e";
  input.counter_key = "e-counter";
  input.ttl_us = 3 * s;
  input.window = {0, 20 * s};
  input.workers.push_back(
      worker("a", {elected(1 * s, 2), work(1 * s + 10, 4, 1, 2), resigned(5 * s)}));
  input.workers.push_back(worker("b", {elected(5 * s + 100'000, 3), work(6 * s, 6, 1, 3)}));
  input.history = {candidate(2, "a1", "a"), candidate(3, "b1", "b"), counter(4, "a", 1, 2),
                   gone(5, "a1"), counter(6, "b", 1, 3)};
  return input;
}

std::string all(const chaos::CheckResult& result) {
  std::string out;
  for (const auto& v : result.violations) out += v + "\n";
  return out;
}

}  // namespace

TEST_CASE("a clean handover passes, with its terms and figures", "[chaos][checker]") {
  const auto result = chaos::check(clean_handover());
  INFO(all(result));
  CHECK(result.ok());
  REQUIRE(result.terms.size() == 2);
  CHECK(result.terms[0].node == "a");
  CHECK(result.terms[0].to_us == 5 * s);
  CHECK(result.terms[1].to_us == 20 * s);  // still running: open until the window's end
  CHECK(result.leadership_changes == 1);
  CHECK(result.writes_accepted == 2);
  CHECK(result.overlaps == 0);
  CHECK(result.longest_gap.length() == 1 * s);  // from the window's start to a's election
}

TEST_CASE("two nodes leading at once fail", "[chaos][checker]") {
  auto input = clean_handover();
  // a only notices at 6 s that its key was deleted: b was elected at 5.1 s.
  input.workers[0] = worker("a", {elected(1 * s, 2), lost(6 * s, "key-deleted")});
  const auto result = chaos::check(input);
  CHECK(result.overlaps == 1);
  REQUIRE(result.violations.size() == 1);
  CHECK(result.violations[0].find("two leaders: a") == 0);
}

TEST_CASE("a lost leadership ends at the deadline it reports", "[chaos][checker]") {
  auto input = clean_handover();
  // Frozen (SIGSTOP) past its TTL: it says "lost" at 9 s, but its deadline was 5 s. Its work,
  // frozen in its midst, ran on until then: past the lease's expiry, which the library reports.
  input.workers[0] =
      worker("a", {elected(1 * s, 2), overran(9 * s, 2), lost(9 * s, "deadline-passed", 5 * s)});
  auto result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());
  CHECK(result.terms[0].to_us == 5 * s);
  CHECK(result.works[0].to_us == 9 * s);  // no work-stopped: the lost that follows the work's end
  CHECK(result.works[0].ended_by == "lost");
  CHECK(result.covered_work_overlaps == 1);

  input.workers[0] = worker("a", {elected(1 * s, 2), lost(9 * s, "deadline-passed", 5200'000)});
  result = chaos::check(input);
  CHECK(result.overlaps == 1);
}

TEST_CASE("a killed leader's term ends when it was reaped", "[chaos][checker]") {
  auto input = clean_handover();
  input.workers[0] = worker("a", {elected(1 * s, 2)}, 4 * s);
  auto result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());
  CHECK(result.terms[0].ended_by == "died");

  input.workers[0] = worker("a", {elected(1 * s, 2)}, 5200'000);
  result = chaos::check(input);
  CHECK(result.overlaps == 1);
}

TEST_CASE("a term ends when its work is cancelled, though lost waits for the work to stop",
          "[chaos][checker]") {
  // a's key is deleted at 5 s: its work is cancelled at once and takes 250 ms to stop, b leads
  // after the 200 ms takeover delay, and the library reports a's overrun at that moment.
  auto input = clean_handover();
  input.workers[0] = worker("a", {elected(1 * s, 2), cancelled(5 * s, 2, 250), overran(5200'000, 2),
                                  stopped(5250'000, 2), lost(5250'000, "key-deleted")});
  input.workers[1] = worker("b", {elected(5200'000, 3), work(6 * s, 6, 1, 3)});
  const auto result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());
  REQUIRE(result.terms.size() == 2);
  CHECK(result.terms[0].to_us == 5 * s);  // not the lost at 5.25 s: no two leaders
  CHECK(result.terms[0].ended_by == "key-deleted");
  CHECK(result.overlaps == 0);
  REQUIRE(result.works.size() == 2);
  CHECK(result.works[0].to_us == 5250'000);
  CHECK(result.works[0].term_to_us == 5 * s);
  CHECK(result.works[0].ended_by == "stopped");
  CHECK(result.works[0].stop_latency_ms == 250);
  CHECK(result.covered_work_overlaps == 1);
  CHECK(result.overrun_reports == 1);
}

TEST_CASE("two works at once that no overrun report covers fail", "[chaos][checker]") {
  // Finding 1 of the review: a's term ends at its local deadline (5 s); the resignation is
  // signed at once, so b leads 2 ms later, while a's work takes 250 ms to stop; etcd's expiry
  // is far off, so the library reports no overrun.
  auto input = clean_handover();
  input.workers[0] = worker("a", {elected(1 * s, 2), cancelled(5 * s, 2, 250), stopped(5250'000, 2),
                                  lost(5250'000, "deadline-passed", 5 * s)});
  input.workers[1] = worker("b", {elected(5002'000, 3), work(6 * s, 6, 1, 3)});
  auto result = chaos::check(input);
  INFO(all(result));
  CHECK(result.overlaps == 0);  // the beliefs did not overlap
  CHECK(result.work_overlaps == 1);
  CHECK(result.covered_work_overlaps == 0);
  REQUIRE(result.violations.size() == 1);
  CHECK(result.violations[0] ==
        "two works at once: a (fence 2, its term until 5.000 s, its work until 5.250 s; stop "
        "latency 250 ms) and b (fence 3, from 5.002 s) overlap by 0.248 s; a reported no overrun "
        "for fence 2");

  // An overrun report of another term does not cover it.
  input.workers[0].events.insert(input.workers[0].events.begin() + 2,
                                 worker("a", {overran(5100'000, 7)}).events.front());
  result = chaos::check(input);
  CHECK(result.work_overlaps == 1);
  CHECK_FALSE(result.ok());

  // Its own term's does: counted, not failed.
  input.workers[0].events[2] = worker("a", {overran(5100'000, 2)}).events.front();
  result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());
  CHECK(result.work_overlaps == 0);
  CHECK(result.covered_work_overlaps == 1);
  CHECK(result.works[0].overran);

  chaos::RunInfo run;
  run.stop_latency_max_ms = 300;
  const auto text = chaos::summary(run, {}, input, result);
  INFO(text);
  CHECK(text.find("work stop latency: 0-300 ms, drawn per worker process from the seed") !=
        std::string::npos);
  CHECK(text.find("works overlapping, not covered by an overrun report: 0\n") != std::string::npos);
  CHECK(text.find("works overlapping, covered by an overrun report: 1 (overrun reports: 1)\n") !=
        std::string::npos);
}

TEST_CASE("a work that stops before the next leader's elected passes", "[chaos][checker]") {
  auto input = clean_handover();
  input.workers[0] = worker("a", {elected(1 * s, 2), cancelled(5 * s, 2, 80), stopped(5080'000, 2),
                                  lost(5080'000, "deadline-passed", 5 * s)});
  const auto result = chaos::check(input);  // b leads from 5.1 s
  INFO(all(result));
  CHECK(result.ok());
  CHECK(result.works[0].to_us == 5080'000);
  CHECK(result.work_overlaps == 0);
  CHECK(result.covered_work_overlaps == 0);
}

TEST_CASE("a killed process's work ends when it was reaped", "[chaos][checker]") {
  // Cancelled at 4.9 s, SIGKILLed in the midst of its stop, reaped at 5.2 s; b leads at 5.1 s.
  auto input = clean_handover();
  input.workers[0] = worker("a", {elected(1 * s, 2), cancelled(4900'000, 2, 300)}, 5200'000);
  auto result = chaos::check(input);
  INFO(all(result));
  CHECK(result.overlaps == 0);
  CHECK(result.terms[0].to_us == 4900'000);
  CHECK(result.works[0].to_us == 5200'000);
  CHECK(result.works[0].ended_by == "died");
  CHECK(result.work_overlaps == 1);
  CHECK(all(result).find("its work until 5.200 s, reaped; stop latency 300 ms") !=
        std::string::npos);

  // Reaped before b's elected: nothing ran at once.
  input.workers[0] = worker("a", {elected(1 * s, 2), cancelled(4900'000, 2, 300)}, 5050'000);
  result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());

  // Killed while it believed it led, reaped after b's elected: the term rule's violation,
  // not reported twice.
  input.workers[0] = worker("a", {elected(1 * s, 2)}, 5200'000);
  result = chaos::check(input);
  CHECK(result.overlaps == 1);
  CHECK(result.work_overlaps == 0);
  CHECK(result.violations.size() == 1);
}

TEST_CASE("a fenced write from a node that was not first in line fails", "[chaos][checker]") {
  auto input = clean_handover();
  // a campaigns again behind b, and a write of a's is accepted anyway.
  input.history.push_back(candidate(7, "a2", "a"));
  input.history.push_back(counter(8, "a", 2, 7));
  auto result = chaos::check(input);
  INFO(all(result));
  CHECK_FALSE(result.ok());
  CHECK(all(result).find("from a: accepted while b was the leader (fence 3)") != std::string::npos);
}

TEST_CASE("a write is judged by the key it was fenced on, not by its node", "[chaos][checker]") {
  // b gives its lease up at its deadline (its key a phantom still first in line), campaigns
  // with a new lease, and a late write fenced on the old key lands: etcd was right to take it.
  auto input = clean_handover();
  input.workers[1] = worker(
      "b", {elected(5 * s + 100'000, 3), lost(8 * s, "deadline-passed", 8 * s), elected(9 * s, 7)});
  input.history = {
      candidate(2, "a1", "a"), candidate(3, "b1", "b"), counter(4, "a", 1, 2), gone(5, "a1"),
      counter(6, "b", 1, 3),   candidate(7, "b2", "b"), counter(8, "b", 2, 3), gone(9, "b1")};
  auto result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());

  // A write fenced on the new key while the old one is still first must not have been taken.
  input.history = {
      candidate(2, "a1", "a"), candidate(3, "b1", "b"), counter(4, "a", 1, 2), gone(5, "a1"),
      counter(6, "b", 1, 3),   candidate(7, "b2", "b"), counter(8, "b", 2, 7), gone(9, "b1")};
  result = chaos::check(input);
  CHECK(all(result).find("from b: accepted while b was the leader (fence 3)") != std::string::npos);

  input = clean_handover();
  input.history.push_back(counter(7, "a", 2, 3));  // a's write under b's key
  result = chaos::check(input);
  CHECK(all(result).find("from a: fenced on b's key (fence 3)") != std::string::npos);
}

TEST_CASE("a fenced write with an older token than one accepted fails", "[chaos][checker]") {
  auto input = clean_handover();
  // As after a restore from an old snapshot: a's old key is back, and first in line again.
  input.history.push_back(candidate(7, "a2", "a"));
  input.history.back().create_revision = 2;
  input.history.push_back(gone(8, "b1"));
  input.history.push_back(counter(9, "a", 2, 2));
  const auto result = chaos::check(input);
  INFO(all(result));
  CHECK(all(result).find("fence 2 is older than fence 3") != std::string::npos);
}

TEST_CASE("a write with no candidate key, or not in etcd, fails", "[chaos][checker]") {
  auto input = clean_handover();
  input.history.push_back(counter(7, "c", 1, 99));
  auto result = chaos::check(input);
  CHECK(all(result).find("from c: accepted while no candidate key had its fence 99") !=
        std::string::npos);

  input = clean_handover();
  input.workers[1].events.push_back(
      worker("b", {work(7 * s, 9, 2, 3)}).events.front());  // etcd has no revision 9
  result = chaos::check(input);
  CHECK(all(result).find("b reports write 2 at revision 9") != std::string::npos);
}

TEST_CASE("refused writes are counted, not failed", "[chaos][checker]") {
  auto input = clean_handover();
  input.workers[0].events.insert(input.workers[0].events.begin() + 2,
                                 worker("a", {refused(4 * s, 2)}).events.front());
  const auto result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());
  CHECK(result.stale_writes_refused == 1);
}

TEST_CASE("no leader for longer than TTL + 2 s fails unless etcd had no quorum",
          "[chaos][checker]") {
  auto input = clean_handover();
  input.workers[0] = worker("a", {elected(1 * s, 2), lost(2 * s, "lease-expired")});
  input.workers[1] = worker("b", {elected(8 * s, 3)});  // 6 s without a leader; the limit is 5 s
  input.history = {candidate(2, "a1", "a"), candidate(3, "b1", "b"), gone(5, "a1")};
  auto result = chaos::check(input);
  CHECK(all(result).find("no leader for 6.000 s (from 2.000 s)") != std::string::npos);
  CHECK(result.longest_gap.length() == 6 * s);

  input.quorum_down = {{2500'000, 6 * s}};  // a cluster restart: only 0.5 s and 2 s count
  result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());
  CHECK(result.longest_gap.length() == 2 * s);

  // No leader at all since the workers started.
  input.workers = {worker("a", {})};
  input.quorum_down.clear();
  result = chaos::check(input);
  CHECK(all(result).find("no leader for 20.000 s (from 0.000 s)") != std::string::npos);
}

TEST_CASE("a gap is counted from etcd's last raft leader change + election timeout",
          "[chaos][checker]") {
  // a dies at 2 s; etcd's raft leader changes at 3 s, which gives a's lease its full TTL again.
  auto input = clean_handover();
  input.workers[0] = worker("a", {elected(1 * s, 2)}, 2 * s);
  input.workers[1] = worker("b", {elected(8 * s + 500'000, 3)});  // 6.5 s without a leader
  input.history = {candidate(2, "a1", "a"), candidate(3, "b1", "b"), gone(5, "a1")};
  input.raft_leader_changes_us = {3 * s};
  auto result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());  // counted from 4 s: 4.5 s
  CHECK(result.longest_gap.length() == 6500'000);
  CHECK(result.longest_counted_gap.length() == 4500'000);

  // Changes after the gap's end, or long before its start, change nothing.
  input.raft_leader_changes_us = {500'000, 9 * s};
  result = chaos::check(input);
  CHECK(all(result).find("no leader for 6.500 s (from 2.000 s) while etcd had a quorum;") !=
        std::string::npos);

  // Counted from the change, it is still too long.
  input.workers[1] = worker("b", {elected(10 * s, 3)});
  input.raft_leader_changes_us = {3 * s};
  result = chaos::check(input);
  CHECK(all(result).find("no leader for 8.000 s (from 2.000 s) while etcd had a quorum, 6.000 s "
                         "of it counted") != std::string::npos);

  // A change late in a gap does not excuse what went before it: 2 s to 7.5 s is 5.5 s.
  input.raft_leader_changes_us = {7 * s + 500'000};
  input.workers[1] = worker("b", {elected(8 * s, 3)});
  result = chaos::check(input);
  CHECK(all(result).find("no leader for 6.000 s (from 2.000 s) while etcd had a quorum, 5.500 s "
                         "of it counted") != std::string::npos);
}

TEST_CASE("while etcd elects a raft leader after the runner took its leader, the gap stops",
          "[chaos][checker]") {
  // a dies at 1 s; at 4 s the runner kills the raft leader, and the others take until 6.5 s to
  // elect one (a split vote). etcd then gives a's lease its TTL again: b leads at 10.7 s.
  auto input = clean_handover();
  input.workers[0] = worker("a", {elected(500'000, 2)}, 1 * s);
  input.workers[1] = worker("b", {elected(10 * s + 700'000, 3)});  // 9.7 s without a leader
  input.history = {candidate(2, "a1", "a"), candidate(3, "b1", "b"), gone(5, "a1")};
  input.raft_leader_changes_us = {6 * s + 500'000};
  // Counted up to the change, 1 s to 6.5 s is too long.
  auto result = chaos::check(input);
  INFO(all(result));
  CHECK(all(result).find("5.500 s of it counted") != std::string::npos);

  input.raft_leader_lost_us = {4 * s};  // 4 s to 6.5 s: etcd had no raft leader
  result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());
  const auto windows = chaos::raft_leaderless(input);
  REQUIRE(windows.size() == 1);
  CHECK(windows[0].from_us == 4 * s);
  CHECK(windows[0].to_us == 6 * s + 500'000);
}

TEST_CASE("keys left under the election fail", "[chaos][checker]") {
  auto input = clean_handover();
  input.keys_left = {"e/b1"};
  const auto result = chaos::check(input);
  REQUIRE(result.violations.size() == 1);
  CHECK(result.violations[0].find("e/b1") != std::string::npos);
}

TEST_CASE("quorum outages are cut out of a gap", "[chaos][checker]") {
  const auto parts = chaos::subtract({0, 10}, {{8, 12}, {2, 3}, {-5, 1}});
  REQUIRE(parts.size() == 2);
  CHECK(parts[0].from_us == 1);
  CHECK(parts[0].to_us == 2);
  CHECK(parts[1].from_us == 3);
  CHECK(parts[1].to_us == 8);
}

TEST_CASE("the summary gives the takeover after a leader killed in the midst of a fault",
          "[chaos][report]") {
  auto input = clean_handover();
  // a is killed at 4 s; b, next in line, is elected at 5.1 s.
  input.workers[0] = worker("a", {elected(1 * s, 2)}, 4 * s);
  const auto result = chaos::check(input);
  chaos::RunInfo run;
  run.ttl_s = 3;
  run.end_us = 20 * s;
  chaos::Fault fault;
  fault.kind = "freeze-watch";
  fault.target = "b watch on m2, leader a killed";
  fault.row = "m2";
  fault.from_us = 3800'000;
  fault.to_us = 10 * s;
  fault.killed_us = 4 * s;
  fault.killed_row = "w1";
  fault.next_in_line = "b";
  run.notes.push_back("freeze-watch skipped at 12.000 s: no leader");
  const auto text = chaos::summary(run, {fault}, input, result);
  INFO(text);
  CHECK(text.find("works overlapping, covered by an overrun report: 0 (overrun reports: 0)\n") !=
        std::string::npos);
  CHECK(text.find("work stop latency: none") != std::string::npos);
  CHECK(text.find("freeze-watch at 4.000 s (b watch on m2, leader a killed): successor b, the "
                  "next in line, led 1.100 s after the kill (TTL 3 s)\n") != std::string::npos);
  CHECK(text.find("leader kills in the midst of a fault: 1, slowest takeover 1.100 s after the "
                  "kill\n") != std::string::npos);
  CHECK(text.find("freeze-watch skipped at 12.000 s: no leader\n") != std::string::npos);

  fault.next_in_line = "c";
  const auto other = chaos::summary(run, {fault}, input, result);
  CHECK(other.find("successor b (not c, the next in line) led 1.100 s") != std::string::npos);

  const auto svg = chaos::timeline_svg(run, {fault}, input, result);
  CHECK(svg.find("freeze-watch: the leader SIGKILLed at 4.000 s") != std::string::npos);
}

namespace {

std::string campaigning(std::int64_t t, const std::string& lease) {
  return R"("event":"campaigning","mono_us":)" + std::to_string(t) + R"(,"lease":")" + lease +
         R"(","ttl":3)";
}

// clean_handover() as a lock (--lock): the keys carry no value, as etcd's Mutex puts them, and
// belong to the worker whose `campaigning` named their lease; a releases at 5 s (work-finished).
CheckInput lock_handover() {
  auto input = clean_handover();
  input.workers[0] = worker("a", {campaigning(1 * s - 10, "a1"), elected(1 * s, 2),
                                  work(1 * s + 10, 4, 1, 2), lost(5 * s, "work-finished")});
  input.workers[1] =
      worker("b", {campaigning(2 * s, "b1"), elected(5 * s + 100'000, 3), work(6 * s, 6, 1, 3)});
  input.history = {candidate(2, "a1", ""), candidate(3, "b1", ""), counter(4, "a", 1, 2),
                   gone(5, "a1"), counter(6, "b", 1, 3)};
  return input;
}

}  // namespace

TEST_CASE("a lock's keys, without a value, are judged by the worker of their lease",
          "[chaos][checker]") {
  auto input = lock_handover();
  auto result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());
  CHECK(result.writes_accepted == 2);
  REQUIRE(result.terms.size() == 2);
  CHECK(result.terms[0].ended_by == "work-finished");

  // b's write accepted while a still held the lock: stale, named by a's lease.
  input.history = {candidate(2, "a1", ""), candidate(3, "b1", ""), counter(4, "b", 1, 3),
                   gone(5, "a1")};
  input.workers[1] = worker("b", {campaigning(2 * s, "b1"), work(4 * s, 4, 1, 3)});
  result = chaos::check(input);
  REQUIRE(!result.ok());
  CHECK(all(result).find("accepted while a was the leader (fence 2)") != std::string::npos);

  // A write fenced on a key whose lease no worker campaigned with names no owner.
  input = lock_handover();
  input.workers[0] =
      worker("a", {elected(1 * s, 2), work(1 * s + 10, 4, 1, 2), lost(5 * s, "work-finished")});
  result = chaos::check(input);
  REQUIRE(!result.ok());
  CHECK(all(result).find("fenced on an unknown holder (e/a1)") != std::string::npos);

  // Found in the long lock run: a's campaign had to grant another lease (a2) after the one its
  // `campaigning` named (a1) was lost; `elected` names the lease its term holds.
  input = lock_handover();
  input.workers[0] = worker(
      "a", {campaigning(1 * s - 10, "a1"),
            R"("event":"elected","mono_us":1000000,"key":"e/a2","rev":2,"lease":"a2","ttl":3)",
            work(1 * s + 10, 4, 1, 2), lost(5 * s, "work-finished")});
  input.history = {candidate(2, "a2", ""), candidate(3, "b1", ""), counter(4, "a", 1, 2),
                   gone(5, "a2"), counter(6, "b", 1, 3)};
  result = chaos::check(input);
  INFO(all(result));
  CHECK(result.ok());
}
