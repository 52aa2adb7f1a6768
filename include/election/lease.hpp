// election::Lease: an etcd lease kept alive from the moment it is granted, with a local deadline.
#pragma once

#include "election/client.hpp"
#include "election/clock.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace election {

namespace detail {
class LeaseState;
struct access;
}  // namespace detail

struct LeaseOptions {
  /// Subtracted from "send time of the last acknowledged keep-alive + TTL" to give the local
  /// deadline. Negative (the default) means a tenth of the granted TTL, at most one second.
  std::chrono::milliseconds margin{-1};
};

/// What etcd says of a lease right now.
struct LeaseTimeToLive {
  std::chrono::seconds remaining;  ///< -1 when the lease has expired
  std::chrono::seconds granted;
  std::vector<std::string> keys;  ///< the keys attached to the lease
};

/// A granted lease, renewed every third of its TTL until it is lost, revoked, or this object is
/// destroyed. All leases of one Client share one keep-alive stream.
///
/// The lease counts as lost at the first of: a keep-alive reply with TTL 0 (errc::lease_expired:
/// revoked from outside or expired), the local deadline passing without a renewal
/// (errc::lease_deadline_passed: the server may expire it any moment), revoke()
/// (errc::lease_revoked), or the Client closing (errc::client_closed). A broken keep-alive stream
/// is re-opened with backoff while the deadline allows. Once lost, a lease stays lost.
///
/// Thread safety: distinct objects: safe; shared objects: unsafe; use on the Client's executor.
/// Destroying a Lease stops the keep-alive but does not revoke: the lease then expires after
/// its TTL. Call revoke() to end it at once.
class Lease {
 public:
  using clock = lease_clock;

  /// Waits for a connection (Client::connect), grants a lease with `ttl` and starts keeping it
  /// alive. etcd raises a TTL under its minimum (2 s by default): ttl() is what was granted.
  /// Throws errc::invalid_ttl for ttl <= 0, errc::ttl_refused for a TTL etcd refuses,
  /// errc::unreachable, errc::timeout. Cancellable.
  static boost::asio::awaitable<Lease> grant(Client& client, std::chrono::seconds ttl,
                                             LeaseOptions options = {});

  Lease(Lease&&) noexcept;
  Lease& operator=(Lease&&) noexcept;
  ~Lease();

  std::int64_t id() const;
  std::chrono::seconds ttl() const;            ///< as granted (or last renewed) by etcd
  std::chrono::seconds requested_ttl() const;  ///< as asked for

  /// True once the lease is lost; lost_reason() then says why.
  bool lost() const;
  boost::system::error_code lost_reason() const;

  /// The instant after which the lease may be gone on the server, on lease_clock (which counts
  /// time the host spent suspended, as etcd's clock does).
  clock::time_point deadline() const;

  /// Completes when the lease is lost, with the reason. Cancellable (throws operation_aborted).
  boost::asio::awaitable<boost::system::error_code> wait_lost();

  /// Stops the keep-alive and revokes the lease; its keys are deleted by etcd at once. The lease
  /// counts as lost (errc::lease_revoked) even when the request fails; it then expires after its
  /// TTL. A lease that is already gone on the server is not an error.
  boost::asio::awaitable<void> revoke();

  /// Asks etcd for the lease's remaining TTL and keys.
  boost::asio::awaitable<LeaseTimeToLive> time_to_live();

 private:
  friend struct detail::access;
  explicit Lease(std::shared_ptr<detail::LeaseState> state);
  void stop_keep_alive();
  std::shared_ptr<detail::LeaseState> state_;
};

}  // namespace election
