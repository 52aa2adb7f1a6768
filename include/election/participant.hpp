// election::Participant: campaign for leadership of an election, keep it, and know when it ends.
#pragma once

#include "election/client.hpp"
#include "election/lease.hpp"
#include "election/observer.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace election {

/// The key that makes a participant the leader. `revision` (the key's create revision) is a
/// fencing token: every new leader's is larger than any before it.
struct LeaderKey {
  std::string name;
  std::string key;
  std::int64_t revision = 0;
  std::int64_t lease = 0;
};

struct ParticipantOptions {
  /// The lease TTL: how long after this process dies, hangs or is cut off another candidate can
  /// take over. etcd raises a TTL under its minimum (2 s by default); granted_ttl() tells.
  std::chrono::seconds ttl{10};
  LeaseOptions lease{};
  /// How long campaign() waits after winning before it returns (is_leader() stays false until
  /// then). A lease cannot cover one case: the previous leader's key removed before its lease
  /// ran out, by an operator (`etcdctl del`, `etcdctl lease revoke`) or by etcd itself. An
  /// etcd raft leader that was paused (SIGSTOP, a VM or GC freeze) still believes it leads for
  /// a moment after it resumes, and revokes every lease that expired in its stale view, even
  /// though the new raft leader has been renewing them (etcd issues #12528 and #15247; fixed
  /// by etcd pull request #16822 in later 3.4 and 3.5 releases, not in Debian 12's 3.4.23).
  /// The old leader learns of the removal from its key's watch about when this candidate
  /// wins; waiting a few watch round trips keeps the two from acting at once. 0 (the default)
  /// returns at once, as etcd's own Campaign does.
  std::chrono::milliseconds takeover_delay{0};
};

namespace detail {
class ParticipantState;
}

/// One candidate in one election.
///
/// campaign() grants a lease, keeps it alive from that moment (also while waiting in line) and
/// returns once this participant leads. Leadership then ends at the first of: a keep-alive reply
/// saying the lease is gone, the leader key deleted, the lease's local deadline passing without
/// a renewal, or resign(). keep_alive() waits for that end and says why; is_leader() checks it
/// at any moment against the steady clock, so a process that stalls does not go on believing it
/// leads after etcd could have let another candidate in.
///
/// Thread safety: distinct objects: safe; shared objects: unsafe; use on the Client's executor.
/// Lifetime: the Client must outlive the Participant. Destroying a Participant cancels what it
/// has in flight and revokes its lease in the background (its key goes at once); prefer
/// `co_await resign()` before, which waits for that.
class Participant {
 public:
  /// Throws errc::invalid_election_name (empty, or ending in '/'), errc::invalid_ttl,
  /// errc::value_too_large.
  Participant(Client& client, std::string election, std::string value,
              ParticipantOptions options = {});
  Participant(Participant&&) noexcept;
  Participant& operator=(Participant&&) noexcept;
  ~Participant();

  const std::string& election() const;
  const std::string& value() const;

  /// Grants the lease campaign() will use (or keeps the live one there is) and starts keeping
  /// it alive, so its id and granted TTL are known before waiting in line. Optional: campaign()
  /// does it itself. Returns the lease id. Throws as Lease::grant.
  boost::asio::awaitable<std::int64_t> acquire_lease();

  /// The id of the current lease, once granted.
  std::optional<std::int64_t> lease_id() const;

  /// Grants a lease (unless a live one is kept from an earlier campaign), keeps it alive, and
  /// waits in line until this participant leads. The protocol is etcd's (and etcdctl elect's):
  /// the candidate's key, the election name and the lease in hex, is created with the lease
  /// unless it exists, and the one with the lowest create revision leads. The Client's watch of
  /// the election (shared with its Observers) says when that is this key, and a read of the key
  /// confirms it. A dropped connection or a restarted etcd does not cost the place in line: the
  /// key stays, and the watch resumes. A key deleted while in line (an operator's `etcdctl del`)
  /// is created again, at the back of the line. While in line
  /// the lease is not given up when its local deadline passes (etcd away longer than the TTL
  /// allows): renewals go on, and etcd's answer decides. etcd keeps leases across a restart or
  /// a change of its raft leader, so the candidate keeps its place; a win then waits for a
  /// renewal answered within the deadline rule before it counts.
  ///
  /// Cancellable: a cancelled campaign (a timer with `||`, a cancellation signal) withdraws the
  /// candidate (revokes its lease, deleting its key even when the win raced the cancel) and
  /// throws operation_aborted. Throws errc::lease_expired when etcd says the lease is gone
  /// while waiting, errc::lease_deadline_passed when no renewal is answered in time at the win,
  /// errc::unreachable when etcd cannot be reached to enter the line, errc::client_closed,
  /// errc::auth_failed, errc::permission_denied, and errc::invalid_argument when already
  /// leading or when another campaign() is in progress.
  boost::asio::awaitable<LeaderKey> campaign();

  /// While leading: waits until leadership ends and returns why: errc::resigned,
  /// errc::lease_expired, errc::key_deleted, errc::lease_deadline_passed (also what a lost
  /// connection to etcd becomes: the lease could not be renewed in time), errc::client_closed.
  /// Throws errc::not_leader when called without leadership. Cancellable (throws operation_aborted;
  /// leadership is unaffected). The lease is renewed in the background whether or not this is
  /// awaited.
  boost::asio::awaitable<boost::system::error_code> keep_alive();

  /// True while this participant leads: it won, nothing ended its leadership, and the lease's
  /// local deadline has not passed.
  bool is_leader() const;

  /// The key of the current (or last) leadership, if this participant ever won.
  std::optional<LeaderKey> leader_key() const;

  /// The lease's local deadline while leading (see Lease::deadline).
  std::optional<std::chrono::steady_clock::time_point> deadline() const;

  /// The TTL etcd granted for the current lease (0 before the first campaign).
  std::chrono::seconds granted_ttl() const;

  /// Gives up leadership: marks it ended at once (so is_leader() is false before any request
  /// is sent), deletes the leader key guarded by its revision, and revokes the lease, each with
  /// a fresh request deadline. Not leading: revokes the lease if there is one. Safe to call
  /// more than once.
  boost::asio::awaitable<void> resign();

  /// Sets the leader's value. Throws errc::not_leader when etcd no longer holds this
  /// participant's key as leader, errc::value_too_large.
  boost::asio::awaitable<void> proclaim(std::string value);

  /// Writes `key` = `value` only if this participant's leader key still exists with the
  /// revision it won with: the check is done by etcd in the same transaction, so a write from a
  /// deposed leader is refused even when it is late. Returns the write's revision. Throws
  /// errc::not_leader when refused or when this participant never won.
  boost::asio::awaitable<std::int64_t> put_if_leader(std::string key, std::string value);

  /// The election's current leader as etcd sees it, or std::nullopt.
  boost::asio::awaitable<std::optional<LeaderInfo>> leader();

  /// An Observer of this participant's election.
  Observer observe();

 private:
  std::shared_ptr<detail::ParticipantState> state_;
};

}  // namespace election
