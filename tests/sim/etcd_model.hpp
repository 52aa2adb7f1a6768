// The simulated etcd's state machine: one linearizable key-value store with revisions, leases
// on the simulated clock, guarded transactions, prefix reads, a watchable history and
// compaction. What one raft leader applies; tests/sim/world.hpp puts members, raft elections
// and links around it. No I/O, no clock of its own: every call is given the time.
#pragma once

#include "election/clock.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace election::sim {

using Time = lease_clock::time_point;
using Duration = lease_clock::duration;

struct KeyValue {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;
  std::int64_t lease = 0;
};

/// One change as a watch reports it: a deletion carries the key and the revision of deletion.
struct Event {
  bool deleted = false;
  KeyValue kv;
};

/// What took a key away: the simulator's checker tells an owner's own withdrawal from the
/// removals it could not foresee.
enum class Cause { none, owner, expiry, operator_delete, operator_revoke, stale_revocation };

/// A transaction as the library sends them: every compare is on a key's create revision.
struct Txn {
  struct Compare {
    std::string key;
    std::int64_t create_revision = 0;  ///< 0: the key must not exist
  };
  struct Op {
    enum class Kind { put, del, range } kind = Kind::range;
    std::string key;
    std::string value;
    std::int64_t lease = 0;
  };
  std::vector<Compare> compares;
  std::vector<Op> success;
  std::vector<Op> failure;
};

struct TxnResult {
  bool succeeded = false;
  bool lease_not_found = false;  ///< a put named a lease etcd does not have: nothing applied
  std::int64_t revision = 0;     ///< the store's revision after the transaction
  std::vector<std::vector<KeyValue>> ranges;  ///< one per range op, in order
};

class Store {
 public:
  static constexpr std::chrono::seconds min_ttl{2};

  /// The time removals are stamped with (the world sets it before every event).
  void set_now(Time now) { now_ = now; }

  std::int64_t revision() const { return revision_; }
  std::int64_t compacted() const { return compacted_; }

  TxnResult txn(const Txn& txn, Cause cause = Cause::owner);
  /// Every key in [key, end) at the current revision, by key.
  std::vector<KeyValue> range(const std::string& key, const std::string& end) const;
  const KeyValue* find(const std::string& key) const;

  /// Grants a lease of `ttl` (raised to the minimum); returns its id and the granted TTL.
  std::pair<std::int64_t, std::chrono::seconds> grant(std::chrono::seconds ttl, Time now);
  /// A keep-alive: the TTL left (the granted one), or 0 for a lease etcd does not have or
  /// whose expiry has passed (etcd's Renew refuses an expired lease that awaits revocation).
  std::chrono::seconds renew(std::int64_t lease, Time now);
  /// Deletes the lease's keys in one revision; false if etcd had no such lease.
  bool revoke(std::int64_t lease, Cause cause);
  /// Revokes every lease whose expiry has passed (etcd's leader does this every 500 ms).
  std::vector<std::int64_t> expire(Time now);
  /// A new raft leader extends every lease to now + `extend` + its TTL.
  void promote(Time now, Duration extend);
  /// Deletes `key` (an operator's etcdctl del); returns whether it existed.
  bool del(const std::string& key, Cause cause);

  /// History up to and including `revision` is gone.
  void compact(std::int64_t revision);
  /// The events in [key, end) from revision `from` on, or nothing when `from` is compacted.
  std::optional<std::vector<Event>> events(const std::string& key, const std::string& end,
                                           std::int64_t from) const;

  struct Lease {
    std::chrono::seconds ttl;
    Time expiry;
    std::set<std::string> keys;
  };
  const std::map<std::int64_t, Lease>& leases() const { return leases_; }
  const Lease* lease(std::int64_t id) const {
    auto it = leases_.find(id);
    return it == leases_.end() ? nullptr : &it->second;
  }

  /// Why the last deletion of `key` at create revision `create_revision` happened, and at
  /// which revision (Cause::none: not deleted).
  struct Removal {
    Cause cause = Cause::none;
    std::int64_t revision = 0;
    Time at{};
  };
  Removal removal(const std::string& key, std::int64_t create_revision) const;

  /// The key first in line under `prefix` (lowest create revision) at `revision`, from the
  /// history; needs the history from revision 1 (the checker's copy is never compacted).
  std::optional<KeyValue> first_at(const std::string& prefix, const std::string& end,
                                   std::int64_t revision) const;

  /// Keeps every event for the checker even after compact() (which then only hides them from
  /// watches).
  void keep_history(bool keep) { keep_history_ = keep; }

 private:
  void put(const std::string& key, const std::string& value, std::int64_t lease);
  void erase(const std::string& key, Cause cause);

  std::int64_t revision_ = 1;  // etcd starts at 1
  std::int64_t compacted_ = 0;
  std::int64_t next_lease_ = 0x694d7a0c5e210000;  // looks like etcd's ids, and sorts the same
  std::map<std::string, KeyValue> kvs_;
  std::map<std::int64_t, Lease> leases_;
  std::vector<Event> history_;    // every event, in revision order
  std::size_t visible_from_ = 0;  // history_ index of the first event after the compaction
  std::map<std::pair<std::string, std::int64_t>, Removal> removals_;
  bool keep_history_ = true;
  bool writing_ = false;  // inside one revision
  Time now_{};
};

}  // namespace election::sim
