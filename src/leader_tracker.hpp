// Who leads an election, computed from its candidates' keys; the logic behind Observer.
#pragma once

#include "election/observer.hpp"

#include <map>
#include <optional>
#include <string>
#include <unordered_map>
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
    return report(revision);
  }

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

  std::map<std::int64_t, LeaderInfo> by_revision_;
  std::unordered_map<std::string, std::int64_t> by_key_;
  std::optional<std::optional<LeaderInfo>> reported_;  // unset until the first report
};

}  // namespace election::detail
