// The definitions of reports.hpp: the text and the JSON fields of every event the library's
// client and leader loop give rise to (stream, etcd, campaigning, elected, lost, leader,
// no-leader, work-overran for a work that overran its turn, and the error of a failed campaign).
#include "reports.hpp"

#include <election/clock.hpp>
#include <election/error.hpp>
#include <election/lease.hpp>
#include <election/participant.hpp>

#include <chrono>
#include <string>

namespace leader_worker {

namespace asio = boost::asio;
using election::errc;

void Reports::stream_event(const election::ClientEvent& e) {
  using Kind = election::ClientEvent::Kind;
  if (e.kind == Kind::internal_error) {
    events_.emit("internal-error", {{"what", e.what}},
                 "the election library's background work failed: " + e.what);
    return;
  }
  const char* kind = e.kind == Kind::watch_stream        ? "watch"
                     : e.kind == Kind::watch_stalled     ? "watch-stalled"
                     : e.kind == Kind::keep_alive_stream ? "keep-alive"
                                                         : "keep-alive-hedged";
  const char* text = e.kind == Kind::watch_stream        ? "the election watch answers from "
                     : e.kind == Kind::watch_stalled     ? "the election watch fell silent on "
                     : e.kind == Kind::keep_alive_stream ? "the keep-alive answers from "
                                                         : "renewals went unanswered on ";
  events_.emit("stream", {{"kind", kind}, {"peer", e.peer}},
               std::string(text) + (e.peer.empty() ? "an unknown member" : e.peer));
}

asio::awaitable<void> Reports::report_takeover_delay(election::Client& client) {
  const auto version = co_await client.server_version();
  const bool from_flag = config_.takeover_delay_ms.has_value();
  const auto delay = from_flag ? std::chrono::milliseconds(*config_.takeover_delay_ms)
                               : election::default_takeover_delay(version);
  const std::string shown = version.empty() ? std::string("unknown") : version;
  std::string why = from_flag ? "set by --takeover-delay"
                    : delay.count() > 0
                        ? "the default for an etcd without the fix for stale-leader lease "
                          "revocation (before 3.4.31 and 3.5.13)"
                        : "the default for an etcd with the fix for stale-leader lease revocation";
  events_.emit(
      "etcd",
      {{"version", shown},
       {"takeover_delay_ms", delay.count()},
       {"takeover_delay_from", from_flag ? "flag" : "etcd-version"}},
      "etcd " + shown + ": takeover delay " + std::to_string(delay.count()) + " ms (" + why + ")");
}

election::LeadershipHooks Reports::hooks() {
  election::LeadershipHooks h;
  h.campaigning = [this](const election::CampaignStarted& c) {
    campaigned_ = true;
    const auto lease = election::lease_hex(c.lease);
    events_.emit("campaigning", {{"lease", lease}, {"ttl", c.ttl.count()}},
                 "campaigning in '" + config_.election + "' with lease " + lease + " (TTL " +
                     std::to_string(c.ttl.count()) + " s)");
  };
  h.elected = [this](const election::LeaderKey& key) {
    const auto granted = leadership_->participant().granted_ttl().count();
    events_.emit("elected",
                 {{"key", key.key},
                  {"rev", key.create_revision},
                  {"lease", election::lease_hex(key.lease)},
                  {"ttl", granted}},
                 std::string(config_.lock_writes ? "elected: holds the lock with key "
                                                 : "elected: leads with key ") +
                     key.key + " (revision " + std::to_string(key.create_revision) + ", lease " +
                     election::lease_hex(key.lease) + ", TTL " + std::to_string(granted) + " s)");
  };
  h.lost = [this](const election::LeadershipLost& lost) { report_lost(lost); };
  // An event of its own, naming the term by its revision, so that a reader (the chaos checker)
  // can tell which work overran.
  h.work_overran = [this](const election::LeaderKey& key) {
    events_.emit("work-overran", {{"rev", key.create_revision}},
                 "error: the work of the leadership at revision " +
                     std::to_string(key.create_revision) +
                     " is still running after its turn ended");
  };
  h.leader_changed = [this](const election::LeaderEvent& change) {
    if (change.leader) {
      const auto& leader = *change.leader;
      events_.emit("leader",
                   {{"value", leader.value}, {"key", leader.key}, {"rev", leader.create_revision}},
                   (config_.lock_writes
                        ? "observed: the lock is held with key " + leader.key
                        : "observed: the leader is " + leader.value + " (key " + leader.key) +
                       ", revision " + std::to_string(leader.create_revision) +
                       (config_.lock_writes ? "" : ")"));
    } else {
      events_.emit("no-leader", {}, "observed: the election has no leader");
    }
  };
  h.retrying = [this](const election::RetryScheduled& r) {
    events_.error("campaign failed: " + strip_tag(r.message, r.error) + "; campaigning again in " +
                  std::to_string(r.next_attempt_in.count()) + " ms");
  };
  return h;
}

void Reports::report_lost(const election::LeadershipLost& lost) {
  const auto rev = lost.key.create_revision;
  if (lost.reason == asio::error::operation_aborted) {
    events_.emit("lost", {{"reason", "shutdown"}, {"rev", rev}},
                 "lost the leadership: shutting down, work stopped");
    return;
  }
  Fields fields{{"reason", election::reason_name(lost.reason)}, {"rev", rev}};
  std::string text = "lost the leadership: " + lost.reason.message();
  if (!lost.message.empty()) text += " (" + lost.message + ")";
  if (lost.reason == errc::lease_deadline_passed && lost.deadline) {
    fields["deadline_us"] = micros(on_monotonic(*lost.deadline));
    text += " (the local deadline passed " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                               election::lease_clock::now() - *lost.deadline)
                               .count()) +
            " ms ago)";
  }
  if (!lost.work_stopped_in_time) text += "; the work stopped late";
  events_.emit("lost", fields, text + "; work stopped");
}

}  // namespace leader_worker
