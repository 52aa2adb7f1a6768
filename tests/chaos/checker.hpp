// The chaos suite's judge: plain data in, verdicts out, no server and no clock of its own, so
// every rule can be tested with hand-written event sequences (checker_test.cpp).
//
// Inputs are what the runner collected: every leader-worker process's --json events (all on the
// one machine's CLOCK_MONOTONIC, in microseconds), the time each process was reaped, etcd's
// history of the election's keys and the fenced counter (from revision 1), the windows in which
// etcd had no quorum, and the keys left under the election prefix after every worker exited.
//
// The rules (see README.md, "Chaos"):
//  - A term (a node believing it leads) starts at its `elected` and ends at the earliest of:
//    its next `lost` or `resigned`; its work's `work-cancelled` (the library cancels the work
//    when the leadership ends, and reports `lost` only once the work has stopped, which
//    leader-worker --stop-latency delays); the `deadline_us` that `lost` reports; or, when the
//    process left no such event (SIGKILL, crash), the instant it was reaped: the last instant a
//    dead process could have believed anything. Terms of different nodes must not overlap.
//  - A work (what a leader does: leader-worker's CounterWork) starts at its `elected` too and
//    runs until it has stopped: its `work-stopped` (leader-worker says it just before its work
//    ends); without one, the term's `lost` or `resigned` (at 96145a3 src/api/leadership.cpp
//    reports `lost` only after the work's end, in every path: a worker from before
//    `work-stopped` is judged by that); without either, the instant the process was reaped.
//    Works of different nodes must not run at once, unless the earlier one is covered by an
//    overrun report: a `work-overran` event of its node naming its term's revision (the
//    library's LeadershipHooks::work_overran: the work had not stopped by the moment the
//    library reckons another candidate could lead; at 96145a3 that reckoning is wrong for a
//    term ended at its local deadline, whose resignation is signed at once, so its successor
//    leads at once and no overrun is reported: review safety-96145a3.md, finding 1). Two works
//    whose terms overlap are the term rule's violation, not reported again. Covered overlaps
//    are counted, not failed.
//  - Every write etcd accepted on the counter key names its node and the fence it was written
//    under (the create revision of the writer's candidate key). That key must be the writer's
//    and first in line (lowest create revision under `election/`) at the write's revision, and
//    the fence must be no older than any accepted before it. (A node can hold two keys for a
//    moment, one of a lease it gave up at its deadline: the write is judged by its own fence.)
//    A key's value names its node; a lock's key (--lock: no value, as etcd's Mutex puts it)
//    is the node's whose `campaigning` event named the key's lease.
//    Every `work` event a worker reports as written must be such a write, with its fence.
//  - Inside the check window, time without any term, counted only while etcd had a quorum,
//    must never exceed TTL + slack (2 s). etcd restarts its lease clocks when its raft leader
//    changes (every lease is extended to then + election timeout + its TTL), so a dead
//    leader's key may live that long past each change: a gap is counted from the later of
//    its start and the last raft leader change before its end + the election timeout.
//  - No key may be left under the election prefix after every worker has exited.
#pragma once

#include "worker/json_lines.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace chaos {

using election::test::WorkerEvent;

/// One leader-worker process (one incarnation: a restarted slot gets a new node name).
struct WorkerRun {
  std::string node;
  int slot = 0;
  std::int64_t started_us = 0;
  /// When the runner reaped it; empty while it runs.
  std::optional<std::int64_t> ended_us;
  std::vector<WorkerEvent> events;
};

/// One change of a key in etcd's history.
struct KvChange {
  std::int64_t revision = 0;
  bool put = true;
  std::string key;
  std::int64_t create_revision = 0;  // puts only
  std::string value;                 // puts only
};

struct Interval {
  std::int64_t from_us = 0;
  std::int64_t to_us = 0;
  std::int64_t length() const { return to_us - from_us; }
};

/// A node acting as leader, per the rules above.
struct Term {
  std::string node;
  int slot = 0;
  std::int64_t fence = 0;
  std::int64_t from_us = 0;
  std::int64_t to_us = 0;
  /// lost's reason, "resigned", or "died" (no event closed it).
  std::string ended_by;
};

/// A leader's work, per the rules above: it runs from its term's start to when it stopped.
struct Work {
  std::string node;
  int slot = 0;
  std::int64_t fence = 0;
  std::int64_t from_us = 0;
  std::int64_t to_us = 0;
  /// The end of its term (Term::to_us); the work ran on from there until to_us.
  std::int64_t term_to_us = 0;
  /// "stopped" (its `work-stopped`), "lost" or "resigned" (no `work-stopped`: the event that
  /// follows the work's end), "elected-again", "died" (reaped) or "running".
  std::string ended_by;
  /// Its node reported a `work-overran` for this term's revision.
  bool overran = false;
  /// The stop latency its `work-cancelled` reported, if it was cancelled.
  std::optional<std::int64_t> stop_latency_ms;
};

struct CheckInput {
  std::string election;     ///< the election name; candidate keys are `election/...`
  std::string counter_key;  ///< the key the workers write through the fenced write
  std::int64_t ttl_us = 0;
  std::int64_t gap_slack_us = 2'000'000;
  /// Time zero for the instants in violation messages (the run's start).
  std::int64_t origin_us = 0;
  /// Where a leader is expected: from the workers' start to the start of the shutdown.
  Interval window;
  std::vector<WorkerRun> workers;
  std::vector<KvChange> history;  ///< in revision order
  std::vector<Interval> quorum_down;
  /// When a member became raft leader (from the members' logs), in any order.
  std::vector<std::int64_t> raft_leader_changes_us;
  /// When the runner killed or froze the member that was raft leader then: etcd serves no
  /// write, and expires no lease, until another member becomes raft leader.
  std::vector<std::int64_t> raft_leader_lost_us;
  std::int64_t election_timeout_us = 1'000'000;  ///< etcd's default
  std::vector<std::string> keys_left;
};

struct CheckResult {
  std::vector<Term> terms;  ///< by start time
  std::vector<Work> works;  ///< by start time
  std::vector<std::string> violations;
  int overlaps = 0;
  /// Works of different nodes running at once (their terms did not overlap): not covered by
  /// an overrun report (violations), and covered by one (counted only).
  int work_overlaps = 0;
  int covered_work_overlaps = 0;
  int overrun_reports = 0;     ///< `work-overran` events
  int leadership_changes = 0;  ///< consecutive terms held by different nodes
  int writes_accepted = 0;     ///< counter puts in etcd's history
  int stale_writes_refused = 0;
  int writes_unanswered = 0;  ///< given up at the deadline, or failed otherwise
  /// The longest time without a leader while etcd had a quorum, and where it was.
  Interval longest_gap;
  /// The longest such time counted as the rule counts it (from etcd's last lease-clock restart).
  Interval longest_counted_gap;
  bool ok() const { return violations.empty(); }
};

/// A process's terms. A term still open at the end of the events closes at `ended_us`, or at
/// `open_until_us` for a process that is still running.
std::vector<Term> leadership_terms(const WorkerRun& run, std::int64_t open_until_us);

/// A process's works, one for each of its terms (in the same order). A work still running at
/// the end of the events closes at `ended_us`, or at `open_until_us` for a running process.
std::vector<Work> leadership_works(const WorkerRun& run, std::int64_t open_until_us);

/// Parts of `gap` during which no interval of `down` holds, i.e. etcd had a quorum. The result's
/// longest part is what the leaderless rule measures.
std::vector<Interval> subtract(Interval gap, const std::vector<Interval>& down);

/// From each raft_leader_lost_us to the next raft leader change (at most 60 s): the times etcd
/// had no raft leader because the runner took it away.
std::vector<Interval> raft_leaderless(const CheckInput& input);

CheckResult check(const CheckInput& input);

}  // namespace chaos
