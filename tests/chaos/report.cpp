#include "report.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

namespace chaos {

namespace {

std::string fixed(double value, int digits) {
  char out[64];
  std::snprintf(out, sizeof out, "%.*f", digits, value);
  return out;
}

std::string secs(std::int64_t us) { return fixed(static_cast<double>(us) / 1e6, 3) + " s"; }

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// One colour per kind, used by both the bands and the legend.
const char* fault_colour(const std::string& kind) {
  if (kind == "kill-leader") return "#d62728";
  if (kind == "pause-leader") return "#7f7f7f";
  if (kind == "cut-worker") return "#ff7f0e";
  if (kind == "slow-link") return "#e7ba52";
  if (kind == "freeze-member") return "#17becf";
  if (kind == "kill-member") return "#9467bd";
  if (kind == "restart-cluster") return "#8c564b";
  if (kind == "freeze-watch") return "#c51b7d";
  return "#bcbd22";
}

const char* term_colour(int slot) {
  static const char* colours[] = {"#1f77b4", "#2ca02c", "#e377c2", "#bcbd22",
                                  "#393b79", "#637939", "#8c6d31", "#843c39"};
  return colours[static_cast<unsigned>(slot) % (sizeof colours / sizeof *colours)];
}

}  // namespace

std::string summary(const RunInfo& run, const std::vector<Fault>& faults, const CheckInput& input,
                    const CheckResult& result) {
  std::map<std::string, int> by_kind;
  for (const auto& f : faults) ++by_kind[f.kind];
  std::ostringstream out;
  out << "chaos run: seed " << run.seed << ", " << run.duration_s << " s of faults ("
      << secs(run.end_us - run.start_us) << " in all), " << run.workers << " workers (TTL "
      << run.ttl_s << " s, takeover delay " << run.takeover_delay_ms << " ms"
      << (run.takeover_delay_chosen ? " chosen for this etcd" : "") << "), " << run.members
      << " etcd members";
  if (run.lock_writes > 0)
    out << "; lock mode: the workers take the lock, write " << run.lock_writes
        << " times, release it, take it again";
  out << "\n";
  if (run.stop_latency_max_ms > 0)
    out << "work stop latency: " << run.stop_latency_min_ms << "-" << run.stop_latency_max_ms
        << " ms, drawn per worker process from the seed (stop-latency.tsv)\n";
  else
    out << "work stop latency: none (the works stop when cancelled)\n";
  out << "faults injected: " << faults.size();
  std::string sep = " (";
  for (const auto& [kind, count] : by_kind) {
    out << sep << kind << " " << count;
    sep = ", ";
  }
  out << (by_kind.empty() ? "" : ")") << "\n";
  int processes = static_cast<int>(input.workers.size());
  out << "worker processes: " << processes << " (" << processes - run.workers
      << " started in place of killed ones)\n";
  out << "leadership: " << result.terms.size() << " terms, " << result.leadership_changes
      << " changes of leader\n";
  out << "overlaps (two leaders at once): " << result.overlaps << "\n";
  out << "works overlapping, not covered by an overrun report: " << result.work_overlaps << "\n";
  out << "works overlapping, covered by an overrun report: " << result.covered_work_overlaps
      << " (overrun reports: " << result.overrun_reports << ")\n";
  out << "fenced writes: " << result.writes_accepted << " accepted by etcd, "
      << result.stale_writes_refused << " stale refused by etcd, " << result.writes_unanswered
      << " given up or failed\n";
  out << "longest leaderless gap while etcd had a quorum: " << secs(result.longest_gap.length());
  if (result.longest_gap.length() > 0)
    out << " (at " << secs(result.longest_gap.from_us - run.start_us) << ")";
  out << "\n  counted from etcd's last raft leader change + election timeout: "
      << secs(result.longest_counted_gap.length());
  if (result.longest_counted_gap.length() > 0)
    out << " (at " << secs(result.longest_counted_gap.from_us - run.start_us) << ")";
  out << "; limit TTL + 2 s = " << secs(input.ttl_us + input.gap_slack_us) << " ("
      << input.raft_leader_changes_us.size() << " raft leader changes)\n";
  std::int64_t outage = 0;
  for (const auto& d : input.quorum_down) outage += d.length();
  out << "etcd without quorum: " << input.quorum_down.size() << " times, " << secs(outage)
      << " in all\n";
  const auto leaderless = raft_leaderless(input);
  std::int64_t electing = 0;
  for (const auto& w : leaderless) electing += w.length();
  out << "etcd electing a raft leader after the runner took its leader away: " << leaderless.size()
      << " times, " << secs(electing) << " in all\n";
  // The takeover after each kill of a leader in the midst of a fault (freeze-watch): the kill
  // to the next `elected` of any worker.
  std::int64_t slowest = -1;
  int kills = 0;
  for (const auto& f : faults) {
    if (f.killed_us == 0) continue;
    ++kills;
    std::int64_t next_at = 0;
    std::string next_node;
    for (const auto& w : input.workers)
      for (const auto& e : w.events)
        if (e.event() == "elected" && e.mono_us() >= f.killed_us &&
            (next_node.empty() || e.mono_us() < next_at)) {
          next_at = e.mono_us();
          next_node = e.node();
        }
    out << f.kind << " at " << secs(f.killed_us - run.start_us) << " (" << f.target << "): ";
    if (next_node.empty()) {
      out << "no worker led after the kill\n";
      continue;
    }
    out << "successor " << next_node
        << (next_node == f.next_in_line ? ", the next in line,"
                                        : " (not " + f.next_in_line + ", the next in line)")
        << " led " << secs(next_at - f.killed_us) << " after the kill (TTL " << run.ttl_s
        << " s)\n";
    slowest = std::max(slowest, next_at - f.killed_us);
  }
  if (kills > 0)
    out << "leader kills in the midst of a fault: " << kills << ", slowest takeover "
        << (slowest < 0 ? std::string("none") : secs(slowest)) << " after the kill\n";
  for (const auto& note : run.notes) out << note << "\n";
  out << "keys left under the election: " << input.keys_left.size() << "\n";
  if (result.ok()) {
    out << "verdict: PASS\n";
  } else {
    out << "verdict: FAIL, " << result.violations.size() << " violation(s):\n";
    const std::size_t shown = std::min<std::size_t>(result.violations.size(), 20);
    for (std::size_t i = 0; i < shown; ++i) out << "  - " << result.violations[i] << "\n";
    if (shown < result.violations.size())
      out << "  ... and " << result.violations.size() - shown << " more (see check.txt)\n";
  }
  if (!run.command.empty()) out << "reproduce: " << run.command << "\n";
  return out.str();
}

std::string timeline_svg(const RunInfo& run, const std::vector<Fault>& faults,
                         const CheckInput& input, const CheckResult& result) {
  // Rows: one per worker slot, then one per etcd member.
  std::vector<std::string> rows;
  for (int i = 1; i <= run.workers; ++i) rows.push_back("w" + std::to_string(i));
  for (int i = 1; i <= run.members; ++i) rows.push_back("m" + std::to_string(i));
  const double left = 70, right = 20, top = 70, row_h = 30, plot_w = 1500;
  const double width = left + plot_w + right;
  const double plot_h = row_h * static_cast<double>(rows.size());
  const double height = top + plot_h + 110;
  const double span = std::max<double>(1, static_cast<double>(run.end_us - run.start_us));
  auto x = [&](std::int64_t us) {
    return left + plot_w * std::clamp(static_cast<double>(us - run.start_us) / span, 0.0, 1.0);
  };
  auto row_y = [&](const std::string& row) {
    const auto it = std::find(rows.begin(), rows.end(), row);
    return top + row_h * static_cast<double>(it - rows.begin());
  };

  std::ostringstream svg;
  svg << R"(<svg xmlns="http://www.w3.org/2000/svg" width=")" << width << R"(" height=")" << height
      << R"(" font-family="DejaVu Sans, sans-serif" font-size="12">)"
      << "\n";
  svg << R"(<rect width="100%" height="100%" fill="white"/>)"
      << "\n";
  svg << R"(<text x=")" << left << R"(" y="20" font-size="15" font-weight="bold">)"
      << xml_escape("chaos run, seed " + std::to_string(run.seed) + ": " +
                    std::to_string(result.terms.size()) + " terms, " +
                    std::to_string(faults.size()) + " faults, " + std::to_string(result.overlaps) +
                    " overlaps, " + std::to_string(result.work_overlaps) +
                    " uncovered work overlaps, longest gap " + secs(result.longest_gap.length()) +
                    " - " + (result.ok() ? "PASS" : "FAIL"))
      << "</text>\n";

  // Row backgrounds and labels.
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const double y = top + row_h * static_cast<double>(i);
    svg << R"(<rect x=")" << left << R"(" y=")" << y << R"(" width=")" << plot_w << R"(" height=")"
        << row_h << R"(" fill=")" << (i % 2 ? "#f4f4f4" : "#fbfbfb") << R"("/>)"
        << "\n";
    svg << R"(<text x=")" << left - 8 << R"(" y=")" << y + row_h / 2 + 4
        << R"(" text-anchor="end">)" << rows[i] << "</text>\n";
  }
  // Time axis: about 15 ticks at a round step.
  const double total_s = span / 1e6;
  double step = 1;
  for (double candidate : {1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0})
    if (total_s / candidate <= 16) {
      step = candidate;
      break;
    }
  for (double t = 0; t <= total_s; t += step) {
    const double tx = left + plot_w * t / total_s;
    svg << R"(<line x1=")" << tx << R"(" y1=")" << top << R"(" x2=")" << tx << R"(" y2=")"
        << top + plot_h << R"(" stroke="#dddddd"/>)"
        << "\n";
    svg << R"(<text x=")" << tx << R"(" y=")" << top + plot_h + 15
        << R"(" text-anchor="middle" fill="#555">)" << fixed(t, 0) << " s</text>\n";
  }

  // Faults: a translucent band on the rows they hit, and a label in the lane above.
  int lane = 0;
  for (const auto& f : faults) {
    const double fx = x(f.from_us);
    // A SIGKILL takes milliseconds: still wide enough to see.
    const double fw = std::max(5.0, x(f.to_us) - fx);
    const auto colour = fault_colour(f.kind);
    const bool all_members = f.row == "etcd";
    const double y = all_members ? row_y("m1") : row_y(f.row);
    const double h = all_members ? row_h * run.members : row_h;
    svg << R"(<rect x=")" << fx << R"(" y=")" << y << R"(" width=")" << fw << R"(" height=")" << h
        << R"(" fill=")" << colour << R"(" fill-opacity=")" << (fw < 8 ? "0.9" : "0.45")
        << R"("><title>)"
        << xml_escape(f.kind + " " + f.target + " at " + secs(f.from_us - run.start_us) + " for " +
                      secs(f.to_us - f.from_us))
        << "</title></rect>\n";
    svg << R"(<line x1=")" << fx << R"(" y1=")" << top - 22 + 10 * lane << R"(" x2=")" << fx
        << R"(" y2=")" << top + plot_h << R"(" stroke=")" << colour
        << R"(" stroke-width="1" stroke-dasharray="2,3"/>)"
        << "\n";
    lane = (lane + 1) % 2;
    if (f.killed_us != 0 && !f.killed_row.empty()) {
      // The leader SIGKILLed in the midst of it: a mark on that worker's row.
      const double kx = x(f.killed_us);
      svg << R"(<rect x=")" << kx << R"(" y=")" << row_y(f.killed_row) << R"(" width="5" height=")"
          << row_h << R"(" fill=")" << colour << R"(" fill-opacity="0.9"><title>)"
          << xml_escape(f.kind + ": the leader SIGKILLed at " + secs(f.killed_us - run.start_us) +
                        " (" + f.target + ")")
          << "</title></rect>\n";
    }
  }
  // A work that ran on past its term: its tail, pale, under the term.
  for (const auto& w : result.works) {
    if (w.to_us <= w.term_to_us) continue;
    const double wx = x(w.term_to_us);
    const double ww = std::max(1.5, x(w.to_us) - wx);
    svg << R"(<rect x=")" << wx << R"(" y=")" << row_y("w" + std::to_string(w.slot)) + 5
        << R"(" width=")" << ww << R"(" height=")" << row_h - 10 << R"(" fill=")"
        << term_colour(w.slot) << R"(" fill-opacity="0.35" rx="2"><title>)"
        << xml_escape(w.node + "'s work, fence " + std::to_string(w.fence) + ", ran on until " +
                      secs(w.to_us - run.start_us) + ", " + secs(w.to_us - w.term_to_us) +
                      " past its term" + (w.overran ? " (overrun reported)" : ""))
        << "</title></rect>\n";
  }
  // Terms on top of the fault bands, so who led stays readable.
  for (const auto& t : result.terms) {
    const double tx = x(t.from_us);
    const double tw = std::max(1.5, x(t.to_us) - tx);
    const double y = row_y("w" + std::to_string(t.slot)) + 5;
    svg << R"(<rect x=")" << tx << R"(" y=")" << y << R"(" width=")" << tw << R"(" height=")"
        << row_h - 10 << R"(" fill=")" << term_colour(t.slot) << R"(" rx="2"><title>)"
        << xml_escape(t.node + " leads, fence " + std::to_string(t.fence) + ", " +
                      secs(t.from_us - run.start_us) + " to " + secs(t.to_us - run.start_us) +
                      ", ended by " + t.ended_by)
        << "</title></rect>\n";
    if (tw > 36)
      svg << R"(<text x=")" << tx + 3 << R"(" y=")" << y + row_h / 2 - 1
          << R"(" fill="white" font-size="10">)" << xml_escape(t.node) << "</text>\n";
  }
  // Quorum outages and the longest gap, under the axis.
  const double below = top + plot_h + 24;
  for (const auto& d : input.quorum_down)
    svg << R"(<rect x=")" << x(d.from_us) << R"(" y=")" << below << R"(" width=")"
        << std::max(2.0, x(d.to_us) - x(d.from_us)) << R"(" height="8" fill="#000"/>)"
        << "\n";
  if (result.longest_gap.length() > 0)
    svg << R"(<rect x=")" << x(result.longest_gap.from_us) << R"(" y=")" << below + 10
        << R"(" width=")"
        << std::max(2.0, x(result.longest_gap.to_us) - x(result.longest_gap.from_us))
        << R"(" height="8" fill="#d62728"/>)"
        << "\n";

  // Legend.
  double lx = left;
  const double ly = below + 40;
  auto legend = [&](const char* colour, const std::string& label, double opacity) {
    svg << R"(<rect x=")" << lx << R"(" y=")" << ly - 10 << R"(" width="14" height="12" fill=")"
        << colour << R"(" fill-opacity=")" << opacity << R"("/>)";
    svg << R"(<text x=")" << lx + 18 << R"(" y=")" << ly << R"(">)" << xml_escape(label)
        << "</text>\n";
    lx += 30 + 7.0 * static_cast<double>(label.size());
  };
  legend(term_colour(1), "leads (one colour per slot)", 1);
  legend(term_colour(1), "its work runs on", 0.35);
  for (const char* kind : {"kill-leader", "pause-leader", "cut-worker", "slow-link",
                           "freeze-member", "kill-member", "restart-cluster", "freeze-watch"})
    legend(fault_colour(kind), kind, 0.45);
  lx = left;
  const double ly2 = ly + 22;
  svg << R"(<rect x=")" << lx << R"(" y=")" << ly2 - 10
      << R"(" width="14" height="8" fill="#000"/><text x=")" << lx + 18 << R"(" y=")" << ly2
      << R"(">etcd without quorum</text>)"
      << "\n";
  svg << R"(<rect x=")" << lx + 190 << R"(" y=")" << ly2 - 10
      << R"(" width="14" height="8" fill="#d62728"/><text x=")" << lx + 208 << R"(" y=")" << ly2
      << R"(">longest leaderless gap (quorum up)</text>)"
      << "\n";
  svg << R"(<text x=")" << lx + 480 << R"(" y=")" << ly2 << R"(" fill="#555">)"
      << "rows w1..w" << run.workers
      << ": worker slots (a killed worker is replaced in its slot); m1..m" << run.members
      << ": etcd members</text>\n";
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace chaos
