// The values the library's objects hand out: a lease's id as etcd writes it, what etcd says
// of a lease, a leader's key and the candidates of an election. Plain values, with no
// behaviour, so that every layer of the implementation can take them.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace election {

/// A lease id as etcd writes it in keys and etcdctl prints it: lowercase hex, no leading zeros
/// (a candidate's key is the election name + "/" + this).
std::string lease_hex(std::int64_t id);

/// What etcd says of a lease right now.
struct LeaseTimeToLive {
  std::chrono::seconds remaining;  ///< -1 when the lease has expired
  std::chrono::seconds granted;
  std::vector<std::string> keys;  ///< the keys attached to the lease
};

/// The key that makes a participant the leader. `create_revision` (the key's create revision)
/// is a fencing token: every new leader's is larger than any before it.
struct LeaderKey {
  std::string name;                  ///< the election
  std::string key;                   ///< election name + "/" + the lease in hex
  std::int64_t create_revision = 0;  ///< the fencing token
  std::int64_t lease = 0;
};

/// A candidate's key in an election, as etcd stores it.
struct LeaderInfo {
  std::string key;               ///< election name + "/" + the candidate's lease in hex
  std::string value;             ///< what the candidate campaigned with or last proclaimed
  std::int64_t create_revision;  ///< the fencing token: grows with every new leader
  std::int64_t mod_revision;     ///< changes with every proclaim
  std::int64_t lease;

  friend bool operator==(const LeaderInfo&, const LeaderInfo&) = default;
};

/// One change of an election's leadership as seen by an Observer.
struct LeaderEvent {
  /// The leader, or std::nullopt when the election has none.
  std::optional<LeaderInfo> leader;
  /// The etcd revision at which this became true.
  std::int64_t revision = 0;

  bool has_leader() const { return leader.has_value(); }
};

}  // namespace election
