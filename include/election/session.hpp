// election::Session: one lease shared by many participants in different elections.
#pragma once

#include "election/client.hpp"
#include "election/clock.hpp"
#include "election/detail/initiate.hpp"
#include "election/error.hpp"
#include "election/lease.hpp"
#include "election/options.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

namespace election {

namespace detail {
class SessionState;
struct access;
}  // namespace detail

/// One lease for any number of Participants and Leaderships in different elections of one
/// process, as etcd's Go client (concurrency.Session) has it: one renewal stream entry instead
/// of one per election, however many elections. A Participant made from a Session campaigns
/// with the session's lease; its key is the election name + "/" + the lease in hex, so one
/// Session has at most one Participant per election (a second is refused).
///
/// The lease is granted at the first campaign (or start()) and kept alive with every rule a
/// participant's own lease has (pipelined renewals counted from their send time, the local
/// deadline on lease_clock). Past its local deadline every leadership on it ends
/// (errc::lease_deadline_passed) while the candidates in line keep their place; when etcd says
/// the lease is gone, every campaign and leadership on it ends (errc::lease_expired), and the
/// next campaign grants a new lease. resign() of one Participant deletes its key only: the
/// lease and the other participants are left alone.
///
/// Destroying the Session revokes the lease (in the background, with fresh deadlines): every
/// leadership on it ends, and campaigns made afterwards by participants that outlive it fail
/// with errc::invalid_argument.
///
/// Each asynchronous operation comes as an awaitable that throws election::error, and in a
/// completion-token form (see Participant) that completes with an error_code first; both run
/// on the Client's executor, start from any thread, and hold the object's state from the
/// moment they are made (one launched after the object was destroyed, or made on an object
/// moved from, fails with errc::object_gone).
///
/// Thread safety: distinct objects: safe; shared objects: unsafe; the accessors on the Client's
/// executor; destroying and close() from any thread (the revocation is sent from the Client's
/// executor). The Client must outlive the Session.
class Session {
 public:
  /// Throws errc::invalid_ttl for a TTL <= 0. Nothing is sent.
  explicit Session(Client& client, SessionOptions options = {});
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  /// Revokes the lease, if one is live (see close()).
  ~Session();

  /// Ends the session now: its lease is revoked in the background, with fresh deadlines, and
  /// no new one is granted. Every leadership on it ends (errc::lease_revoked) and later
  /// campaigns of its participants fail with errc::invalid_argument. The lease's renewals are
  /// the one thing that keeps the Client's executor busy while nothing else runs: close() the
  /// Session once its participants have stopped, and io_context::run() returns after the
  /// revocation is answered. Idempotent.
  void close();

  /// Start: grants the lease now (or returns the live one), so that its id and granted TTL are
  /// known before any campaign. Optional: the first campaign does it.
  ///
  /// Completes with: the lease id. Token form: void(error_code, std::int64_t).
  /// Errors: as Lease::grant (errc::ttl_refused, errc::unreachable, errc::timeout,
  ///   errc::client_closed, auth errors).
  /// Cancellation: terminal, partial. Campaigns waiting on the same grant are not cut short:
  ///   one of them grants again.
  boost::asio::awaitable<std::int64_t> start();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::int64_t))
                CompletionToken = default_token>
  auto async_start(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::int64_t)>(
        std::forward<CompletionToken>(token), nullptr, detail::bind_start(&start_start, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::int64_t))
                CompletionToken = default_token>
  auto async_start(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::int64_t)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_start, state_));
  }

  /// The live lease's id, if one is granted and not known to be lost.
  std::optional<std::int64_t> lease_id() const;
  /// The TTL etcd granted (0 before the first grant).
  std::chrono::seconds granted_ttl() const;
  /// The live lease's local deadline (a lease_clock time).
  std::optional<lease_clock::time_point> deadline() const;

 private:
  friend struct detail::access;
  template <class... Values>
  using Handler = boost::asio::any_completion_handler<void(boost::system::error_code, Values...)>;
  static void start_start(std::shared_ptr<detail::SessionState> state,
                          Handler<std::int64_t> handler, diagnostics* diag);

  std::shared_ptr<detail::SessionState> state_;
};

}  // namespace election
