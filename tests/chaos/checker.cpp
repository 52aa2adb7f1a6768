#include "checker.hpp"

#include <algorithm>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

namespace chaos {

namespace {

std::string seconds(std::int64_t us) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(3);
  out << static_cast<double>(us) / 1e6 << " s";
  return out.str();
}

std::optional<std::int64_t> number(const WorkerEvent& e, const std::string& key) {
  auto it = e.fields.find(key);
  if (it == e.fields.end()) return std::nullopt;
  if (const auto* value = std::get_if<std::int64_t>(&it->second)) return *value;
  return std::nullopt;
}

std::string text(const WorkerEvent& e, const std::string& key) {
  auto it = e.fields.find(key);
  if (it == e.fields.end()) return {};
  if (const auto* value = std::get_if<std::string>(&it->second)) return *value;
  return {};
}

void check_overlaps(const CheckInput& input, CheckResult& result) {
  auto at = [&](std::int64_t us) { return seconds(us - input.origin_us); };
  const auto& terms = result.terms;
  for (std::size_t i = 0; i < terms.size(); ++i) {
    for (std::size_t j = i + 1; j < terms.size() && terms[j].from_us < terms[i].to_us; ++j) {
      if (terms[j].node == terms[i].node || terms[j].to_us <= terms[j].from_us) continue;
      ++result.overlaps;
      result.violations.push_back(
          "two leaders: " + terms[i].node + " (fence " + std::to_string(terms[i].fence) +
          ", until " + at(terms[i].to_us) + ") and " + terms[j].node + " (fence " +
          std::to_string(terms[j].fence) + ", from " + at(terms[j].from_us) + ") overlap by " +
          seconds(std::min(terms[i].to_us, terms[j].to_us) - terms[j].from_us));
    }
  }
  for (std::size_t i = 1; i < terms.size(); ++i)
    if (terms[i].node != terms[i - 1].node) ++result.leadership_changes;
}

// Two works of different nodes at once, where the terms did not overlap: the earlier work ran on
// past its term into the next leader's. Allowed only where its node reported the overrun.
void check_works(const CheckInput& input, CheckResult& result) {
  auto at = [&](std::int64_t us) { return seconds(us - input.origin_us); };
  const auto& works = result.works;
  for (std::size_t i = 0; i < works.size(); ++i) {
    const auto& earlier = works[i];
    for (std::size_t j = i + 1; j < works.size() && works[j].from_us < earlier.to_us; ++j) {
      const auto& later = works[j];
      if (later.node == earlier.node || later.to_us <= later.from_us) continue;
      // Their terms overlap as well: check_overlaps has reported it.
      if (later.from_us < earlier.term_to_us && later.term_to_us > later.from_us) continue;
      if (earlier.overran) {
        ++result.covered_work_overlaps;
        continue;
      }
      ++result.work_overlaps;
      std::string ran = at(earlier.to_us);
      if (earlier.ended_by == "died") ran += ", reaped";
      if (earlier.ended_by == "running") ran += ", still running";
      if (earlier.stop_latency_ms)
        ran += "; stop latency " + std::to_string(*earlier.stop_latency_ms) + " ms";
      const auto fence = std::to_string(earlier.fence);
      result.violations.push_back(
          "two works at once: " + earlier.node + " (fence " + fence + ", its term until " +
          at(earlier.term_to_us) + ", its work until " + ran + ") and " + later.node + " (fence " +
          std::to_string(later.fence) + ", from " + at(later.from_us) + ") overlap by " +
          seconds(std::min(earlier.to_us, later.to_us) - later.from_us) + "; " + earlier.node +
          " reported no overrun for fence " + fence);
    }
  }
}

struct AcceptedWrite {
  std::string node;
  std::int64_t seq = 0;
  std::int64_t fence = 0;
};

// Replays etcd's history: who was first in line at each accepted counter write.
std::map<std::int64_t, AcceptedWrite> check_fencing(const CheckInput& input, CheckResult& result) {
  const std::string prefix = input.election + "/";
  // A lock's keys carry no value (etcd's Mutex and the Lock RPC put ""): such a key belongs to
  // the worker whose `campaigning` or `elected` event named its lease (the key is
  // `election/<lease hex>`).
  std::map<std::string, std::string> lease_owner;
  for (const auto& run : input.workers)
    for (const auto& e : run.events)
      if ((e.event() == "campaigning" || e.event() == "elected") && !text(e, "lease").empty())
        lease_owner[prefix + text(e, "lease")] = run.node;
  struct Candidate {
    std::int64_t create_revision;
    std::string owner;  // its value, or for a key without one the worker of its lease
  };
  auto owner_of = [&](const KvChange& change) {
    if (!change.value.empty()) return change.value;
    const auto it = lease_owner.find(change.key);
    return it == lease_owner.end() ? "an unknown holder (" + change.key + ")" : it->second;
  };
  std::map<std::string, Candidate> candidates;
  std::map<std::int64_t, AcceptedWrite> writes;
  std::int64_t newest_fence = 0;
  std::int64_t last_revision = 0;
  for (const auto& change : input.history) {
    if (change.revision < last_revision)
      throw std::invalid_argument("history is not in revision order");
    last_revision = change.revision;
    if (change.key.compare(0, prefix.size(), prefix) == 0) {
      if (change.put)
        candidates[change.key] = {change.create_revision, owner_of(change)};
      else
        candidates.erase(change.key);
      continue;
    }
    if (change.key != input.counter_key) continue;
    const auto where = "counter write at revision " + std::to_string(change.revision);
    if (!change.put) {
      result.violations.push_back(where + ": the counter was deleted");
      continue;
    }
    ++result.writes_accepted;
    AcceptedWrite write;
    std::int64_t guard = 0;  // the create revision the write was fenced on, as it says itself
    try {
      const auto value = election::test::parse_json_object(change.value);
      write.node = std::get<std::string>(value.at("node"));
      write.seq = std::get<std::int64_t>(value.at("seq"));
      guard = std::get<std::int64_t>(value.at("fence"));
    } catch (const std::exception&) {
      result.violations.push_back(where + ": unreadable value " + change.value);
      continue;
    }
    // The write names the key it was fenced on; a node can have two keys at once (one of a
    // lease given up at its deadline, still in etcd), so it is judged by that key, not by node.
    const Candidate* first = nullptr;
    const Candidate* own = nullptr;
    for (const auto& [key, candidate] : candidates) {
      if (!first || candidate.create_revision < first->create_revision) first = &candidate;
      if (candidate.create_revision == guard) own = &candidate;
    }
    if (!own) {
      result.violations.push_back(where + " from " + write.node +
                                  ": accepted while no candidate key had its fence " +
                                  std::to_string(guard));
      continue;
    }
    if (own->owner != write.node) {
      result.violations.push_back(where + " from " + write.node + ": fenced on " + own->owner +
                                  "'s key (fence " + std::to_string(guard) + ")");
      continue;
    }
    if (own != first) {
      result.violations.push_back(where + " from " + write.node + ": accepted while " +
                                  first->owner + " was the leader (fence " +
                                  std::to_string(first->create_revision) + ")");
      continue;
    }
    write.fence = own->create_revision;
    if (write.fence < newest_fence)
      result.violations.push_back(where + " from " + write.node + ": fence " +
                                  std::to_string(write.fence) + " is older than fence " +
                                  std::to_string(newest_fence) + ", already accepted");
    newest_fence = std::max(newest_fence, write.fence);
    writes.emplace(change.revision, write);
  }
  return writes;
}

// What the workers say they wrote must be what etcd has; refused writes are counted.
void check_work_reports(const CheckInput& input,
                        const std::map<std::int64_t, AcceptedWrite>& writes, CheckResult& result) {
  for (const auto& run : input.workers) {
    for (const auto& e : run.events) {
      if (e.event() != "work") continue;
      const auto ok = e.fields.find("ok");
      const bool written =
          ok != e.fields.end() && std::get_if<bool>(&ok->second) && std::get<bool>(ok->second);
      if (!written) {
        if (text(e, "error").find("not the leader") != std::string::npos)
          ++result.stale_writes_refused;
        else
          ++result.writes_unanswered;
        continue;
      }
      const auto revision = number(e, "rev").value_or(0);
      const auto seq = number(e, "seq").value_or(0);
      const auto fence = number(e, "fence").value_or(0);
      const auto it = writes.find(revision);
      if (it == writes.end() || it->second.node != run.node || it->second.seq != seq) {
        result.violations.push_back(run.node + " reports write " + std::to_string(seq) +
                                    " at revision " + std::to_string(revision) +
                                    ", which etcd's history does not hold as its write");
      } else if (it->second.fence != fence) {
        result.violations.push_back(run.node + " reports write " + std::to_string(seq) +
                                    " with fence " + std::to_string(fence) + ", etcd held fence " +
                                    std::to_string(it->second.fence));
      }
    }
  }
}

void check_gaps(const CheckInput& input, CheckResult& result) {
  const auto window = input.window;
  // The union of all terms, clipped to the window, then its complement.
  std::vector<Interval> led;
  for (const auto& t : result.terms) {
    const auto from = std::max(t.from_us, window.from_us);
    const auto to = std::min(t.to_us, window.to_us);
    if (from < to) led.push_back({from, to});
  }
  std::sort(led.begin(), led.end(),
            [](const Interval& a, const Interval& b) { return a.from_us < b.from_us; });
  std::vector<Interval> gaps;
  auto cursor = window.from_us;
  for (const auto& i : led) {
    if (i.from_us > cursor) gaps.push_back({cursor, i.from_us});
    cursor = std::max(cursor, i.to_us);
  }
  if (cursor < window.to_us) gaps.push_back({cursor, window.to_us});

  const auto limit = input.ttl_us + input.gap_slack_us;
  // "While a quorum is up": not during a cluster restart, nor while the members elect a new
  // raft leader after the runner killed or froze the old one.
  auto unavailable = input.quorum_down;
  for (const auto& window : raft_leaderless(input)) unavailable.push_back(window);
  for (const auto& gap : gaps) {
    for (const auto& part : subtract(gap, unavailable)) {
      if (part.length() > result.longest_gap.length()) result.longest_gap = part;
      // A raft leader change restarts every lease's clock: from it on (+ the election
      // timeout), the gap is counted afresh. Up to each change, and up to the gap's end, the
      // count runs from the later of the gap's start and the last change before.
      std::vector<std::int64_t> changes;
      for (const auto change : input.raft_leader_changes_us)
        if (change < part.to_us) changes.push_back(change);
      std::sort(changes.begin(), changes.end());
      changes.push_back(part.to_us);  // the gap's end is the last point to look at
      Interval counted{part.from_us, part.from_us};
      auto from = part.from_us;
      for (const auto point : changes) {
        if (point > from && point - from > counted.length()) counted = {from, point};
        from = std::max(from, point + input.election_timeout_us);
      }
      if (counted.length() > result.longest_counted_gap.length())
        result.longest_counted_gap = counted;
      if (counted.length() > limit) {
        std::string text = "no leader for " + seconds(part.length()) + " (from " +
                           seconds(part.from_us - input.origin_us) + ") while etcd had a quorum";
        if (counted.length() != part.length())
          text += ", " + seconds(counted.length()) + " of it counted (a raft leader change " +
                  "restarts etcd's lease clocks)";
        result.violations.push_back(text + "; the limit is TTL + slack = " + seconds(limit));
      }
    }
  }
}

}  // namespace

namespace {

// Whether an event that may name a term's revision (`rev`) is about the term with this fence.
bool about(const WorkerEvent& e, std::int64_t fence) {
  const auto rev = number(e, "rev");
  return !rev || *rev == fence;
}

}  // namespace

std::vector<Term> leadership_terms(const WorkerRun& run, std::int64_t open_until_us) {
  std::vector<Term> terms;
  std::optional<Term> open;
  // The open term's work was cancelled then: the node no longer believed it led, though its
  // `lost` waits until the work has stopped.
  std::optional<std::int64_t> cancelled_us;
  auto close = [&](std::int64_t at, std::string by) {
    open->to_us = std::max(open->from_us, std::min(at, cancelled_us.value_or(at)));
    open->ended_by = std::move(by);
    terms.push_back(*open);
    open.reset();
    cancelled_us.reset();
  };
  for (const auto& e : run.events) {
    const auto event = e.event();
    if (event == "elected") {
      // A second `elected` without an end in between: the first term ends where the next begins.
      if (open) close(e.mono_us(), "elected-again");
      open = Term{run.node, run.slot, number(e, "rev").value_or(0), e.mono_us(), 0, {}};
    } else if (open && event == "work-cancelled" && about(e, open->fence)) {
      if (!cancelled_us) cancelled_us = e.mono_us();
    } else if (open && (event == "lost" || event == "resigned")) {
      auto to = e.mono_us();
      if (const auto deadline = number(e, "deadline_us")) to = std::min(to, *deadline);
      close(to, event == "lost" ? text(e, "reason") : "resigned");
    }
  }
  if (open) close(run.ended_us.value_or(open_until_us), run.ended_us ? "died" : "running");
  return terms;
}

std::vector<Work> leadership_works(const WorkerRun& run, std::int64_t open_until_us) {
  std::set<std::int64_t> overran;
  for (const auto& e : run.events)
    if (e.event() == "work-overran") overran.insert(number(e, "rev").value_or(0));
  std::vector<Work> works;
  std::optional<Work> open;
  auto close = [&](std::int64_t at, std::string by) {
    open->to_us = std::max(open->from_us, at);
    open->ended_by = std::move(by);
    open->overran = overran.count(open->fence) > 0;
    works.push_back(*open);
    open.reset();
  };
  for (const auto& e : run.events) {
    const auto event = e.event();
    if (event == "elected") {
      if (open) close(e.mono_us(), "elected-again");
      open = Work{};
      open->node = run.node;
      open->slot = run.slot;
      open->fence = number(e, "rev").value_or(0);
      open->from_us = e.mono_us();
    } else if (open && event == "work-cancelled" && about(e, open->fence)) {
      open->stop_latency_ms = number(e, "stop_latency_ms");
    } else if (open && event == "work-stopped" && about(e, open->fence)) {
      close(e.mono_us(), "stopped");
    } else if (open && (event == "lost" || event == "resigned")) {
      // No `work-stopped` came: the library reports `lost` after the work's end.
      close(e.mono_us(), event);
    }
  }
  if (open) close(run.ended_us.value_or(open_until_us), run.ended_us ? "died" : "running");
  // Both opened by the same `elected` events: one work for each term, in the same order.
  const auto terms = leadership_terms(run, open_until_us);
  if (terms.size() != works.size())
    throw std::logic_error("leadership_works: " + std::to_string(works.size()) + " works for " +
                           std::to_string(terms.size()) + " terms of " + run.node);
  for (std::size_t i = 0; i < works.size(); ++i) works[i].term_to_us = terms[i].to_us;
  return works;
}

std::vector<Interval> raft_leaderless(const CheckInput& input) {
  std::vector<Interval> windows;
  for (const auto lost : input.raft_leader_lost_us) {
    auto until = lost + 60'000'000;
    for (const auto change : input.raft_leader_changes_us)
      if (change > lost) until = std::min(until, change);
    windows.push_back({lost, until});
  }
  return windows;
}

std::vector<Interval> subtract(Interval gap, const std::vector<Interval>& down) {
  std::vector<Interval> sorted = down;
  std::sort(sorted.begin(), sorted.end(),
            [](const Interval& a, const Interval& b) { return a.from_us < b.from_us; });
  std::vector<Interval> parts;
  auto cursor = gap.from_us;
  for (const auto& d : sorted) {
    if (d.to_us <= cursor || d.from_us >= gap.to_us) continue;
    if (d.from_us > cursor) parts.push_back({cursor, d.from_us});
    cursor = std::max(cursor, d.to_us);
  }
  if (cursor < gap.to_us) parts.push_back({cursor, gap.to_us});
  return parts;
}

CheckResult check(const CheckInput& input) {
  CheckResult result;
  std::set<std::string> nodes;
  for (const auto& run : input.workers) {
    if (!nodes.insert(run.node).second)
      throw std::invalid_argument("two worker runs named " + run.node);
    for (auto& t : leadership_terms(run, input.window.to_us)) result.terms.push_back(std::move(t));
    for (auto& w : leadership_works(run, input.window.to_us)) result.works.push_back(std::move(w));
    for (const auto& e : run.events)
      if (e.event() == "work-overran") ++result.overrun_reports;
  }
  std::sort(result.terms.begin(), result.terms.end(),
            [](const Term& a, const Term& b) { return a.from_us < b.from_us; });
  std::sort(result.works.begin(), result.works.end(),
            [](const Work& a, const Work& b) { return a.from_us < b.from_us; });
  check_overlaps(input, result);
  check_works(input, result);
  const auto writes = check_fencing(input, result);
  check_work_reports(input, writes, result);
  check_gaps(input, result);
  for (const auto& key : input.keys_left)
    result.violations.push_back("key left under the election after every worker exited: " + key);
  return result;
}

}  // namespace chaos
