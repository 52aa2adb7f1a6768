#include "etcd_model.hpp"

#include <algorithm>

namespace election::sim {

// A write transaction's changes all carry the revision after the current one; the store moves
// to it once, at the end, if anything changed (etcd's rule: a read-only Txn keeps the revision).

void Store::put(const std::string& key, const std::string& value, std::int64_t lease) {
  const auto rev = revision_ + 1;
  writing_ = true;
  auto& kv = kvs_[key];
  if (kv.create_revision == 0) {
    kv.key = key;
    kv.create_revision = rev;
    kv.version = 0;
  }
  if (kv.lease != 0 && kv.lease != lease)
    if (auto it = leases_.find(kv.lease); it != leases_.end()) it->second.keys.erase(key);
  kv.value = value;
  kv.mod_revision = rev;
  ++kv.version;
  kv.lease = lease;
  if (lease != 0) leases_.at(lease).keys.insert(key);
  history_.push_back({false, kv});
}

void Store::erase(const std::string& key, Cause cause) {
  auto it = kvs_.find(key);
  if (it == kvs_.end()) return;
  const auto rev = revision_ + 1;
  writing_ = true;
  if (it->second.lease != 0)
    if (auto l = leases_.find(it->second.lease); l != leases_.end()) l->second.keys.erase(key);
  removals_[{key, it->second.create_revision}] = {cause, rev, now_};
  KeyValue gone;
  gone.key = key;
  gone.mod_revision = rev;
  history_.push_back({true, gone});
  kvs_.erase(it);
}

TxnResult Store::txn(const Txn& txn, Cause cause) {
  TxnResult out;
  bool ok = true;
  for (const auto& c : txn.compares) {
    const auto* kv = find(c.key);
    const std::int64_t created = kv ? kv->create_revision : 0;
    if (created != c.create_revision) ok = false;
  }
  const auto& ops = ok ? txn.success : txn.failure;
  for (const auto& op : ops)
    if (op.kind == Txn::Op::Kind::put && op.lease != 0 && !leases_.count(op.lease)) {
      out.lease_not_found = true;
      out.revision = revision_;
      return out;
    }
  out.succeeded = ok;
  writing_ = false;
  for (const auto& op : ops) {
    switch (op.kind) {
      case Txn::Op::Kind::put:
        put(op.key, op.value, op.lease);
        break;
      case Txn::Op::Kind::del:
        erase(op.key, cause);
        break;
      case Txn::Op::Kind::range: {
        std::vector<KeyValue> found;
        if (const auto* kv = find(op.key)) found.push_back(*kv);
        out.ranges.push_back(std::move(found));
        break;
      }
    }
  }
  if (writing_) ++revision_;
  writing_ = false;
  out.revision = revision_;
  return out;
}

std::vector<KeyValue> Store::range(const std::string& key, const std::string& end) const {
  std::vector<KeyValue> out;
  for (auto it = kvs_.lower_bound(key); it != kvs_.end() && it->first < end; ++it)
    out.push_back(it->second);
  return out;
}

const KeyValue* Store::find(const std::string& key) const {
  auto it = kvs_.find(key);
  return it == kvs_.end() ? nullptr : &it->second;
}

std::pair<std::int64_t, std::chrono::seconds> Store::grant(std::chrono::seconds ttl, Time now) {
  ttl = std::max(ttl, min_ttl);
  const auto id = ++next_lease_;
  leases_[id] = Lease{ttl, now + ttl, {}};
  return {id, ttl};
}

std::chrono::seconds Store::renew(std::int64_t lease, Time now) {
  auto it = leases_.find(lease);
  if (it == leases_.end() || it->second.expiry <= now) return std::chrono::seconds(0);
  it->second.expiry = now + it->second.ttl;
  return it->second.ttl;
}

bool Store::revoke(std::int64_t lease, Cause cause) {
  auto it = leases_.find(lease);
  if (it == leases_.end()) return false;
  const auto keys = it->second.keys;
  writing_ = false;
  for (const auto& key : keys) erase(key, cause);
  if (writing_) ++revision_;
  writing_ = false;
  leases_.erase(lease);
  return true;
}

std::vector<std::int64_t> Store::expire(Time now) {
  std::vector<std::int64_t> gone;
  for (const auto& [id, l] : leases_)
    if (l.expiry <= now) gone.push_back(id);
  for (const auto id : gone) revoke(id, Cause::expiry);
  return gone;
}

void Store::promote(Time now, Duration extend) {
  for (auto& [id, l] : leases_) l.expiry = now + extend + l.ttl;
}

bool Store::del(const std::string& key, Cause cause) {
  if (!find(key)) return false;
  writing_ = false;
  erase(key, cause);
  if (writing_) ++revision_;
  writing_ = false;
  return true;
}

void Store::compact(std::int64_t revision) {
  revision = std::min(revision, revision_);
  if (revision <= compacted_) return;
  compacted_ = revision;
  while (visible_from_ < history_.size() && history_[visible_from_].kv.mod_revision <= revision)
    ++visible_from_;
  if (!keep_history_) {
    history_.erase(history_.begin(), history_.begin() + static_cast<std::ptrdiff_t>(visible_from_));
    visible_from_ = 0;
  }
}

std::optional<std::vector<Event>> Store::events(const std::string& key, const std::string& end,
                                                std::int64_t from) const {
  if (from <= compacted_) return std::nullopt;
  std::vector<Event> out;
  // History is in revision order: find the first event at `from` or later.
  auto it = std::lower_bound(
      history_.begin() + static_cast<std::ptrdiff_t>(visible_from_), history_.end(), from,
      [](const Event& e, std::int64_t rev) { return e.kv.mod_revision < rev; });
  for (; it != history_.end(); ++it)
    if (it->kv.key >= key && it->kv.key < end) out.push_back(*it);
  return out;
}

Store::Removal Store::removal(const std::string& key, std::int64_t create_revision) const {
  auto it = removals_.find({key, create_revision});
  return it == removals_.end() ? Removal{} : it->second;
}

std::optional<KeyValue> Store::first_at(const std::string& prefix, const std::string& end,
                                        std::int64_t revision) const {
  // Replays the history up to `revision`: the live keys then, and the lowest create revision.
  std::map<std::string, KeyValue> live;
  for (const auto& e : history_) {
    if (e.kv.mod_revision > revision) break;
    if (e.kv.key < prefix || e.kv.key >= end) continue;
    if (e.deleted)
      live.erase(e.kv.key);
    else
      live[e.kv.key] = e.kv;
  }
  std::optional<KeyValue> first;
  for (const auto& [key, kv] : live)
    if (!first || kv.create_revision < first->create_revision) first = kv;
  return first;
}

}  // namespace election::sim
