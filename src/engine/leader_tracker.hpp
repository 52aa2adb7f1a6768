// Who leads an election, computed from its candidates' keys; the logic behind Observer.
#pragma once

#include "base/keys.hpp"
#include "election/values.hpp"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace election::detail {

/// Keeps an election's candidates ordered by create revision (the first one leads, as etcd's
/// Campaign decides) and turns key changes into leadership events, each reported once.
/// Not thread-safe.
class LeaderTracker {
 public:
  /// Replaces every candidate, as read at `revision` (after a compaction or at start). Returns
  /// an event if the leader differs from the last one reported (always, the first time).
  std::optional<LeaderEvent> reset(std::vector<LeaderInfo> candidates, std::int64_t revision) {
    by_revision_.clear();
    by_key_.clear();
    for (auto& c : candidates) insert(std::move(c));
    revision_ = revision;
    return report(revision);
  }

  /// The line holds every change up to this revision (the last reset or applied batch).
  std::int64_t revision() const { return revision_; }

  /// A key under the election prefix was written (a new candidate, or a proclaim).
  std::optional<LeaderEvent> put(LeaderInfo candidate, std::int64_t revision) {
    if (auto it = by_key_.find(candidate.key); it != by_key_.end()) {
      by_revision_.erase(it->second);
      by_key_.erase(it);
    }
    insert(std::move(candidate));
    return report(revision);
  }

  /// A key under the election prefix was deleted (resign, revoke or expiry).
  std::optional<LeaderEvent> erase(const std::string& key, std::int64_t revision) {
    if (auto it = by_key_.find(key); it != by_key_.end()) {
      by_revision_.erase(it->second);
      by_key_.erase(it);
    }
    return report(revision);
  }

  /// One change under the watched range, as a watch reports it: a put (a candidate, a proclaim,
  /// or a resignation's signature) or a deletion (`kv.key` and `kv.mod_revision` only).
  struct Change {
    bool deleted;
    LeaderInfo kv;
  };

  /// What a batch of changes did: the leadership changes, in order, and whether the head was
  /// removed and, if so, by a signed resignation (its signature, for the head's lease and with
  /// its create revision as value, put in the same revision as the deletion). `stale`: the
  /// batch went back in revisions (a change at or below revision(), or out of order), so
  /// nothing of it was applied and the line no longer follows etcd: read it again.
  struct Applied {
    std::vector<LeaderEvent> events;
    std::optional<bool> head_removed_signed;
    bool stale = false;
  };

  /// Applies a watch's batch of changes to the line of `election` (keys under `election/`;
  /// its signatures are read, not kept). A watch delivers each revision once, in order; etcd
  /// 3.4.23 does not always (events repeated, #15275; a watch back in time after a member
  /// restored a snapshot, #15271): such a batch is refused whole, never applied twice.
  Applied apply(const std::string& election, const std::vector<Change>& changes) {
    Applied out;
    auto last = revision_;
    for (const auto& c : changes) {
      // Changes of one revision (one Txn) share it; a later one may not come before.
      if (c.kv.mod_revision < last || (c.kv.mod_revision == last && last == revision_)) {
        out.stale = true;
        return out;
      }
      last = c.kv.mod_revision;
    }
    revision_ = last;
    const auto prefix = election + "/";
    // Signatures first: a signed resignation's deletion and signature share a revision, in
    // either order within it.
    const auto signed_at = [&](const LeaderInfo& head, std::int64_t revision) {
      const auto key = resignation_key(election, head.lease);
      const auto value = std::to_string(head.create_revision);
      for (const auto& c : changes)
        if (!c.deleted && c.kv.mod_revision == revision && c.kv.key == key && c.kv.value == value)
          return true;
      return false;
    };
    for (const auto& c : changes) {
      if (c.kv.key.compare(0, prefix.size(), prefix) != 0) continue;  // a signature
      std::optional<LeaderEvent> change;
      if (c.deleted) {
        if (const auto* head = first(); head && head->key == c.kv.key)
          out.head_removed_signed = signed_at(*head, c.kv.mod_revision);
        change = erase(c.kv.key, c.kv.mod_revision);
      } else {
        change = put(c.kv, c.kv.mod_revision);
      }
      if (change) out.events.push_back(std::move(*change));
    }
    return out;
  }

  std::optional<LeaderInfo> leader() const {
    if (by_revision_.empty()) return std::nullopt;
    return by_revision_.begin()->second;
  }

  /// The candidate that leads, if any (no copy).
  const LeaderInfo* first() const {
    return by_revision_.empty() ? nullptr : &by_revision_.begin()->second;
  }

  /// The candidate whose key is `key`, if it is in line.
  const LeaderInfo* find(const std::string& key) const {
    auto it = by_key_.find(key);
    return it == by_key_.end() ? nullptr : &by_revision_.at(it->second);
  }

  /// Every candidate, in line order (the first leads).
  std::vector<LeaderInfo> line() const {
    std::vector<LeaderInfo> out;
    out.reserve(by_revision_.size());
    for (const auto& [revision, candidate] : by_revision_) out.push_back(candidate);
    return out;
  }

 private:
  void insert(LeaderInfo candidate) {
    by_key_[candidate.key] = candidate.create_revision;
    by_revision_[candidate.create_revision] = std::move(candidate);
  }

  std::optional<LeaderEvent> report(std::int64_t revision) {
    auto now = leader();
    if (reported_ && *reported_ == now) return std::nullopt;
    reported_ = now;
    return LeaderEvent{std::move(now), revision};
  }

  std::int64_t revision_ = 0;
  std::map<std::int64_t, LeaderInfo> by_revision_;
  std::map<std::string, std::int64_t> by_key_;         // not hashed: no bucket array per election
  std::optional<std::optional<LeaderInfo>> reported_;  // unset until the first report
};

}  // namespace election::detail
