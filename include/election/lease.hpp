// election::Lease: an etcd lease kept alive from the moment it is granted, with a local deadline.
#pragma once

#include "election/client.hpp"
#include "election/clock.hpp"
#include "election/detail/initiate.hpp"
#include "election/error.hpp"
#include "election/options.hpp"
#include "election/values.hpp"

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

/// A granted lease, renewed every third of its TTL until it is lost, revoked, or this object is
/// destroyed. All leases of one Client share one keep-alive stream.
///
/// The lease counts as lost at the first of: a keep-alive reply with TTL 0 (errc::lease_expired:
/// revoked from outside or expired), the local deadline passing without a renewal
/// (errc::lease_deadline_passed: the server may expire it any moment), revoke()
/// (errc::lease_revoked), or the Client closing (errc::client_closed). A broken keep-alive stream
/// is re-opened with backoff while the deadline allows. Once lost, a lease stays lost.
///
/// Each asynchronous operation comes as an awaitable that throws election::error, and in a
/// completion-token form (see Participant) that completes with an error_code first; both run
/// on the Client's executor, start from any thread, and hold the object's state from the
/// moment they are made (one launched after the object was destroyed, or made on an object
/// moved from, fails with errc::object_gone).
///
/// Thread safety: distinct objects: safe; shared objects: unsafe; the accessors on the Client's
/// executor. Destroying a Lease (on any thread: a Lease delivered through use_future may be
/// destroyed where it was received; the keep-alive is stopped on the Client's executor) stops
/// the keep-alive but does not revoke: the lease then expires after its TTL. Call revoke() to
/// end it at once.
class Lease {
 public:
  using clock = lease_clock;

  /// Grant: waits for a connection (Client::connect), grants a lease with `ttl` and starts
  /// keeping it alive. etcd raises a TTL under its minimum (2 s by default): ttl() is what was
  /// granted.
  ///
  /// Completes with: the Lease. Token form: void(error_code, Lease) (an empty Lease on error).
  /// Errors: errc::invalid_ttl (ttl <= 0) and errc::invalid_argument (a margin not shorter
  ///   than the TTL) before anything is sent, errc::ttl_refused, errc::unreachable,
  ///   errc::timeout, errc::client_closed, auth errors.
  /// Cancellation: terminal, partial: a lease granted as the cancel lands is not kept alive and
  ///   expires after its TTL.
  static boost::asio::awaitable<Lease> grant(Client& client, std::chrono::seconds ttl,
                                             LeaseOptions options = {});

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, Lease))
                CompletionToken = default_token>
  static auto async_grant(Client& client, std::chrono::seconds ttl, LeaseOptions options,
                          CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, Lease)>(
        std::forward<CompletionToken>(token), nullptr,
        detail::bind_start(&start_grant, client.core_, ttl, options));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, Lease))
                CompletionToken = default_token>
  static auto async_grant(Client& client, std::chrono::seconds ttl, LeaseOptions options,
                          diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, Lease)>(
        std::forward<CompletionToken>(token), &diag,
        detail::bind_start(&start_grant, client.core_, ttl, options));
  }

  /// An empty Lease: what a failed async_grant completes with. Only valid() may be asked of it.
  Lease() noexcept = default;
  Lease(Lease&&) noexcept;
  Lease& operator=(Lease&&) noexcept;
  ~Lease();

  /// False for an empty Lease (default-constructed or moved from).
  bool valid() const noexcept { return state_ != nullptr; }

  std::int64_t id() const;
  std::chrono::seconds ttl() const;            ///< as granted (or last renewed) by etcd
  std::chrono::seconds requested_ttl() const;  ///< as asked for

  /// True once the lease is lost; lost_reason() then says why.
  bool lost() const;
  boost::system::error_code lost_reason() const;

  /// The instant after which the lease may be gone on the server, on lease_clock (which counts
  /// time the host spent suspended, as etcd's clock does).
  clock::time_point deadline() const;

  /// Wait lost: waits until the lease is lost.
  ///
  /// Completes with: the reason (see the class comment). Token form:
  ///   void(error_code, error_code reason).
  /// Errors: operation_aborted when cancelled.
  /// Cancellation: terminal, partial, total: a cancelled wait changes nothing.
  boost::asio::awaitable<boost::system::error_code> wait_lost();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code,
                                                 boost::system::error_code))
                CompletionToken = default_token>
  auto async_wait_lost(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, boost::system::error_code)>(
        std::forward<CompletionToken>(token), nullptr,
        detail::bind_start(&start_wait_lost, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code,
                                                 boost::system::error_code))
                CompletionToken = default_token>
  auto async_wait_lost(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, boost::system::error_code)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_wait_lost, state_));
  }

  /// Revoke: stops the keep-alive and revokes the lease; etcd deletes its keys at once. The
  /// lease counts as lost (errc::lease_revoked) even when the request fails; it then expires
  /// after its TTL. A lease that is already gone on the server is not an error.
  ///
  /// Completes: once etcd confirmed. Token form: void(error_code).
  /// Errors: errc::timeout, errc::unreachable, errc::client_closed, auth errors.
  /// Cancellation: terminal, partial: the revocation may or may not have landed.
  boost::asio::awaitable<void> revoke();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                CompletionToken = default_token>
  auto async_revoke(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code)>(
        std::forward<CompletionToken>(token), nullptr, detail::bind_start(&start_revoke, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                CompletionToken = default_token>
  auto async_revoke(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_revoke, state_));
  }

  /// Time to live: asks etcd for the lease's remaining TTL and keys.
  ///
  /// Completes with: LeaseTimeToLive (remaining -1 once expired). Token form:
  ///   void(error_code, LeaseTimeToLive).
  /// Errors: errc::timeout, errc::unreachable, errc::client_closed, auth errors.
  /// Cancellation: terminal, partial, total: a read leaves nothing behind.
  boost::asio::awaitable<LeaseTimeToLive> time_to_live();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, LeaseTimeToLive))
                CompletionToken = default_token>
  auto async_time_to_live(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, LeaseTimeToLive)>(
        std::forward<CompletionToken>(token), nullptr,
        detail::bind_start(&start_time_to_live, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, LeaseTimeToLive))
                CompletionToken = default_token>
  auto async_time_to_live(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, LeaseTimeToLive)>(
        std::forward<CompletionToken>(token), &diag,
        detail::bind_start(&start_time_to_live, state_));
  }

 private:
  friend struct detail::access;
  template <class... Values>
  using Handler = boost::asio::any_completion_handler<void(boost::system::error_code, Values...)>;

  explicit Lease(std::shared_ptr<detail::LeaseState> state);
  void abandon();  // stops the keep-alive; later operations fail with errc::object_gone
  // The compiled side of each token form (lease.cpp), on the state they were made with.
  static void start_grant(std::shared_ptr<detail::ClientCore> core, Handler<Lease> handler,
                          diagnostics* diag, std::chrono::seconds ttl, LeaseOptions options);
  static void start_wait_lost(std::shared_ptr<detail::LeaseState> state,
                              Handler<boost::system::error_code> handler, diagnostics* diag);
  static void start_revoke(std::shared_ptr<detail::LeaseState> state, Handler<> handler,
                           diagnostics* diag);
  static void start_time_to_live(std::shared_ptr<detail::LeaseState> state,
                                 Handler<LeaseTimeToLive> handler, diagnostics* diag);

  std::shared_ptr<detail::LeaseState> state_;
};

}  // namespace election
