// The keep-alive's decisions, without I/O: when to renew which lease on which stream, when a
// stream is stuck, and what an answer is worth. KeepAliveHub (keep_alive.cpp) carries them out.
#pragma once

#include "base/backoff.hpp"
#include "base/lease_clock.hpp"
#include "base/mutation.hpp"
#include "base/rtt.hpp"
#include "election/error.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

namespace election::detail {

/// Renews many leases over LeaseKeepAlive streams, each lease every third of its TTL, and says
/// what to do about slow and stuck streams. Not thread-safe; no I/O: step() returns actions.
///
/// - Every answer counts. etcd answers the renewals on one stream one at a time, in order, so an
///   answer for a lease belongs to that lease's oldest renewal in flight on that stream, and it
///   renews the lease as of that renewal's send time (LeaseClock), however late it comes.
/// - Renewals are pipelined: one is sent every period whether or not the last one has been
///   answered, so a link whose round trip is longer than the period still renews in time.
/// - A stream is replaced for being stuck or broken, never for being slow: when a renewal on
///   the newest stream (the primary) waits longer than the round-trip timeout (srtt + 4 rttvar
///   of the answers seen, at least 500 ms), a new stream is opened beside it (gRPC's
///   round-robin puts it on another member) and the waiting renewals are sent there too. The
///   old stream stays open until nothing in flight on it could still move a deadline, so its
///   late answers still count; at most three streams are open at once.
/// - A lease is lost the moment its local deadline passes (unless it is held past it, while its
///   candidate waits in line, or for good, a Session's: then a `deadline` action says that its
///   deadline passed, once per deadline), and when etcd answers TTL 0.
class RenewalPlan {
 public:
  using clock = LeaseClock::clock;
  using time_point = clock::time_point;
  using StreamId = std::uint64_t;

  static constexpr std::size_t max_streams = 3;
  static constexpr std::chrono::milliseconds min_patience{500};

  struct Action {
    enum class Kind { open_stream, send, close_stream, lose, deadline };
    Kind kind;
    StreamId stream = 0;
    std::int64_t lease = 0;
    errc reason{};
  };

  /// What the plan has counted, for metrics.
  struct Counters {
    std::uint64_t sent = 0;
    std::uint64_t answered = 0;
    std::uint64_t late = 0;  ///< answered after the round-trip timeout: still counted
    std::uint64_t streams_opened = 0;
    std::uint64_t hedges = 0;  ///< streams opened beside a stuck one
  };

  explicit RenewalPlan(std::uint64_t seed = fresh_seed())
      : backoff_(std::chrono::milliseconds(50), std::chrono::seconds(1), seed) {}

  /// Starts renewing `lease`. The caller keeps `lease_clock` and `hold_past_deadline` alive
  /// until remove(); the first renewal is due a period after the grant was sent.
  void add(std::int64_t lease, LeaseClock* lease_clock, const bool* hold_past_deadline) {
    leases_[lease] = Entry{lease_clock, hold_past_deadline, {}};
  }

  /// Stops renewing `lease`; answers still on their way are ignored.
  void remove(std::int64_t lease) {
    if (ELECTION_MUTATED(renew_after_resign)) return;
    leases_.erase(lease);
  }

  bool empty() const { return leases_.empty(); }
  bool has(std::int64_t lease) const { return leases_.count(lease) != 0; }
  std::size_t stream_count() const { return streams_.size(); }
  std::optional<StreamId> primary() const {
    if (streams_.empty()) return std::nullopt;
    return streams_.back().id;
  }
  const RttEstimator& rtt() const { return rtt_; }
  const Counters& counters() const { return counters_; }
  /// The round trip of the last renewal answered.
  std::chrono::nanoseconds last_rtt() const { return last_rtt_; }

  /// How long a renewal may wait for its answer before its stream counts as stuck: the
  /// round-trip timeout, at least 500 ms.
  std::chrono::nanoseconds patience() const { return rtt_.timeout(min_patience); }

  /// The same for a renewal of a lease with renewal period `period`, but never more than the
  /// period: answers that waited for a raft election (seconds) inflate the estimate, and a
  /// stuck stream must be hedged while a renewal on another one can still reach etcd before
  /// the lease's TTL runs out (two periods after the last answered one, a third left).
  std::chrono::nanoseconds patience(std::chrono::nanoseconds period) const {
    return std::max<std::chrono::nanoseconds>(min_patience, std::min(patience(), period));
  }

  /// What to do now; call after every event and at next_wake() at the latest.
  std::vector<Action> step(time_point now) {
    std::vector<Action> actions;
    wake_ = time_point::max();
    const auto patience = this->patience();

    for (auto it = leases_.begin(); it != leases_.end();) {
      auto& c = *it->second.clock;
      if (c.expired(now) && !*it->second.hold) {
        actions.push_back({Action::Kind::lose, 0, it->first, errc::lease_deadline_passed});
        it = leases_.erase(it);
        continue;
      }
      if (c.expired(now) && it->second.reported != c.deadline()) {
        it->second.reported = c.deadline();
        actions.push_back({Action::Kind::deadline, 0, it->first, errc::lease_deadline_passed});
      }
      if (!c.expired(now)) wake_at(c.deadline());
      ++it;
    }

    // A renewal on the primary unanswered past the patience: the stream is stuck (a frozen
    // member, or a follower still forwarding to a frozen raft leader).
    bool stuck = false;
    if (!streams_.empty()) {
      for (const auto& [lease, sent] : streams_.back().in_flight) {
        auto entry = leases_.find(lease);
        const auto wait =
            entry == leases_.end() ? patience : this->patience(entry->second.clock->period());
        // Stuck now: the hedge below goes at once, or at retry_at_ (which it wakes for); a
        // wake at the past instant it got stuck would spin until then.
        if (now - sent.front() >= wait)
          stuck = true;
        else
          wake_at(sent.front() + wait);
      }
    }
    if (!leases_.empty() && (streams_.empty() || stuck)) {
      if (now < retry_at_) {
        wake_at(retry_at_);
      } else {
        if (streams_.size() >= max_streams) {
          actions.push_back({Action::Kind::close_stream, streams_.front().id});
          streams_.erase(streams_.begin());
        }
        if (stuck) ++counters_.hedges;
        streams_.push_back(Stream{++last_stream_, now});
        ++counters_.streams_opened;
        actions.push_back({Action::Kind::open_stream, streams_.back().id});
        stuck = false;  // the new primary has nothing in flight
      }
    }

    // Older streams stay while an answer on them could still move some deadline.
    for (std::size_t i = 0; i + 1 < streams_.size();) {
      if (could_help(streams_[i])) {
        ++i;
        continue;
      }
      actions.push_back({Action::Kind::close_stream, streams_[i].id});
      streams_.erase(streams_.begin() + static_cast<std::ptrdiff_t>(i));
    }

    // Nothing more goes to a stuck stream while no other can be opened.
    if (streams_.empty() || stuck) return actions;
    auto& primary = streams_.back();
    for (const auto& [lease, entry] : leases_) {
      const auto& c = *entry.clock;
      const auto period = std::chrono::duration_cast<std::chrono::nanoseconds>(c.period());
      const auto window =
          std::min<std::chrono::nanoseconds>(period / 4, std::chrono::milliseconds(250));
      // Due a period after the last renewal etcd answered, a little early (`window`); and at
      // most one a period on this stream, answered or not (pipelined: a round trip longer than
      // the period still renews in time). A lease due within a window after one that goes now
      // goes with it: leases granted at different moments fall into step and leave in one
      // batch, so that a thousand leases wake the process a few times a period, not a thousand
      // (each wake looks at every lease).
      const auto nominal = c.next_renewal(c.last_acknowledged_send());
      auto due = nominal - window;
      auto batched = nominal - 2 * window;
      auto here = primary.in_flight.find(lease);
      if (here != primary.in_flight.end()) {
        due = std::max(due, here->second.back() + period);
        batched = std::max(batched, here->second.back() + period);
      }
      if (now < batched) {
        wake_at(due);
        continue;
      }
      primary.in_flight[lease].push_back(now);
      ++counters_.sent;
      actions.push_back({Action::Kind::send, primary.id, lease});
      wake_at(now + std::min<std::chrono::nanoseconds>(period, this->patience(period)));
    }
    return actions;
  }

  /// A round trip measured elsewhere (the grant), for the patience before the first answer.
  void on_rtt_sample(std::chrono::nanoseconds rtt) { rtt_.sample(rtt); }

  time_point next_wake() const { return wake_; }

  /// An answer on `stream` for `lease` with `ttl`; returns a lose action when etcd says the
  /// lease is gone (TTL 0).
  std::optional<Action> on_reply(StreamId stream, std::int64_t lease, std::chrono::seconds ttl,
                                 time_point now) {
    auto* s = find(stream);
    if (!s) return std::nullopt;
    auto it = s->in_flight.find(lease);
    if (it == s->in_flight.end() || it->second.empty()) return std::nullopt;
    const auto sent = it->second.front();
    it->second.pop_front();
    if (it->second.empty()) s->in_flight.erase(it);
    s->answered = true;
    backoff_.reset();
    const auto took = now - sent;
    if (took >= patience()) ++counters_.late;
    rtt_.sample(took);
    last_rtt_ = took;
    ++counters_.answered;
    auto entry = leases_.find(lease);
    if (entry == leases_.end()) return std::nullopt;  // removed meanwhile
    if (ttl <= std::chrono::seconds::zero()) {
      leases_.erase(entry);
      return Action{Action::Kind::lose, 0, lease, errc::lease_expired};
    }
    entry->second.clock->renewed(ELECTION_MUTATED(deadline_from_arrival) ? now : sent, ttl);
    return std::nullopt;
  }

  /// The stream ended or refused a write: nothing in flight on it will be answered. A stream
  /// that ended without a single answer delays the next one (backoff).
  void on_stream_broken(StreamId stream, time_point now) {
    auto it = std::find_if(streams_.begin(), streams_.end(),
                           [&](const Stream& s) { return s.id == stream; });
    if (it == streams_.end()) return;
    if (!it->answered) retry_at_ = now + backoff_.next();
    streams_.erase(it);
  }

  /// Every lease, as the caller must lose them all (the client closed, credentials refused).
  std::vector<std::int64_t> drain() {
    std::vector<std::int64_t> all;
    for (const auto& [lease, entry] : leases_) all.push_back(lease);
    leases_.clear();
    return all;
  }

 private:
  struct Entry {
    LeaseClock* clock;
    const bool* hold;
    time_point reported;  // the deadline a `deadline` action was last given for
  };
  struct Stream {
    StreamId id;
    time_point opened;
    // Send times of the renewals in flight, per lease, oldest first (etcd answers in order).
    std::map<std::int64_t, std::deque<time_point>> in_flight{};
    bool answered = false;
  };

  Stream* find(StreamId id) {
    for (auto& s : streams_)
      if (s.id == id) return &s;
    return nullptr;
  }

  // Whether an answer still owed on `s` could move the deadline of a lease being renewed.
  bool could_help(const Stream& s) const {
    for (const auto& [lease, sent] : s.in_flight) {
      auto entry = leases_.find(lease);
      if (entry == leases_.end()) continue;
      for (const auto t : sent)
        if (entry->second.clock->would_extend(t)) return true;
    }
    return false;
  }

  void wake_at(time_point t) { wake_ = std::min(wake_, t); }

  std::map<std::int64_t, Entry> leases_;
  std::vector<Stream> streams_;  // oldest first; back() is the primary
  StreamId last_stream_ = 0;
  time_point retry_at_{};
  time_point wake_ = time_point::max();
  Backoff backoff_;
  RttEstimator rtt_;
  std::chrono::nanoseconds last_rtt_{0};
  Counters counters_;
};

}  // namespace election::detail
