// election::Participant: campaign for leadership of an election, keep it, and know when it ends.
#pragma once

#include "election/client.hpp"
#include "election/clock.hpp"
#include "election/detail/initiate.hpp"
#include "election/error.hpp"
#include "election/lease.hpp"
#include "election/observer.hpp"
#include "election/options.hpp"
#include "election/session.hpp"
#include "election/values.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace election {

/// The takeover delay used when ParticipantOptions::takeover_delay is unset, for an etcd that
/// reports `version` (e.g. "3.4.23"): 200 ms before 3.4.31, on 3.5.0 to 3.5.12 and for an
/// unknown version; 0 on 3.4.31 and later 3.4 releases, 3.5.13 and later, and 3.6 onwards.
std::chrono::milliseconds default_takeover_delay(std::string_view version);

namespace detail {
class ParticipantState;
struct access;
}  // namespace detail

/// One candidate in one election.
///
/// campaign() grants a lease, keeps it alive from that moment (also while waiting in line) and
/// returns once this participant leads. Leadership then ends at the first of: a keep-alive reply
/// saying the lease is gone, the leader key deleted, the lease's local deadline passing without
/// a renewal, or resign(). keep_alive() waits for that end and says why; is_leader() checks it
/// at any moment against lease_clock (which counts time the host spent suspended), so a process
/// that stalls or sleeps does not go on believing it leads after etcd could have let another
/// candidate in.
///
/// Whatever ends a campaign or a leadership stops the lease's renewals at once; its revocation,
/// which deletes the key, goes on in the background with fresh deadlines until etcd confirms
/// it. A failed or cancelled campaign, resign() and the destructor withdraw at once. A term that
/// ends without its owner's say (the local deadline, a lost watch) keeps its key in etcd,
/// renewed no more, until its owner says the work it guarded has stopped (resign(), the next
/// campaign(), the destructor) or etcd could have expired it, whichever comes first: nobody is
/// let in while the old work may still run. A key deleted or a lease lost leaves nothing to
/// keep. No lease is renewed without a campaign or a term that owns it (or acquire_lease(), for
/// the next campaign).
///
/// The signature: resign() (and the destructor) while this participant still leads deletes the
/// key with a signed resignation, and the next candidate leads without the takeover delay. It
/// says "my owner chose to end, and its work has stopped": call resign() once the work the
/// leadership guarded has stopped. Every other removal is unsigned and the next candidate waits
/// the delay: a term already ended, a resign() past the lease's local deadline, or one from
/// inside a Leadership's work while it runs (Leadership signs after the work returns).
///
/// Every asynchronous operation comes twice: as an awaitable (`co_await p.campaign()`) that
/// throws election::error, and in a completion-token form (`p.async_campaign(token)`) for any
/// Asio token (a callback, use_future, deferred, use_awaitable, as_tuple(...),
/// redirect_error(...); deferred when none is given) that completes with an error_code first
/// and, given a diagnostics object (which must live until the handler is called), fills it with
/// the text the exception would carry. Both run the same compiled code on the Client's
/// executor: the awaitable form as a child of the awaiting coroutine (which resumes on its own
/// executor), the token form completing on the handler's associated executor, never inline,
/// with the handler's cancellation slot; the handler's allocator serves the handler's own
/// storage. The `Cancellation:` line of each operation names the types it honours, in both
/// forms; in the awaitable form the awaiting coroutine's own filter applies first (Asio's
/// default lets only terminal through).
///
/// Overlapping calls on one Participant: a second campaign() while one runs, campaign() while
/// leading, a second proclaim() while one is in flight, and acquire_lease() while a campaign
/// runs fail with errc::invalid_argument; proclaim(), put_if_leader() and keep_alive() while
/// not leading (also while campaigning) fail with errc::not_leader; resign() during a campaign
/// withdraws it (the campaign fails with errc::resigned); any number of put_if_leader(),
/// keep_alive(), leader() and resign() may run at once.
///
/// Thread safety: distinct objects: safe. Shared objects: unsafe, except that an operation may
/// be started from any thread or executor: its work runs on the Client's executor. Everything
/// else (the accessors) on the Client's executor. The destructor may run on any thread: its
/// clean-up runs on the Client's executor (at once when it is destroyed there).
/// Lifetime: the Client should outlive the Participant (one that outlives its Client fails with
/// errc::client_closed). An operation holds the participant's state from the moment it is made:
/// in flight, it keeps what it needs alive, so the Participant may be destroyed meanwhile (that
/// ends a campaign with operation_aborted and withdraws the lease); made now and launched later
/// (deferred), it runs on the Participant the state was moved to, and fails with
/// errc::object_gone if the Participant was destroyed before, or if it was made on a
/// Participant moved from. Prefer `co_await resign()` before destroying it, which waits for
/// etcd to confirm.
class Participant {
 public:
  /// Throws errc::invalid_election_name (empty, or ending in '/'), errc::invalid_ttl,
  /// errc::value_too_large, and errc::invalid_argument for a negative takeover delay or an
  /// election name that nests with another one used on the same Client ("a" and "a/b").
  Participant(Client& client, std::string election, std::string value,
              ParticipantOptions options = {});
  /// A participant on `session`'s lease, shared with the session's other elections: campaign()
  /// uses the session's live lease (granting it first if there is none), options.ttl and
  /// options.lease are not used (the session's are). Its key is the election + "/" + the lease
  /// in hex, so one Session has at most one participant per election. resign(), a term's end
  /// and the destructor delete this participant's key only; the lease and the session's other
  /// participants are left alone. Losing the session's lease ends this participant's
  /// leadership (errc::lease_expired, errc::lease_revoked) or campaign like any other loss;
  /// the next campaign() is made on the session's next lease. The Session may go first: the
  /// participant's campaigns then fail with errc::invalid_argument.
  /// Throws what the Client constructor throws (not errc::invalid_ttl), and
  /// errc::invalid_argument when `session` already has a participant in `election`.
  Participant(Session& session, std::string election, std::string value,
              ParticipantOptions options = {});
  Participant(Participant&&) noexcept;
  Participant& operator=(Participant&&) noexcept;
  ~Participant();

  const std::string& election() const;
  const std::string& value() const;

  /// Acquire lease: grants the lease campaign() will use (or keeps the live one there is) and
  /// starts keeping it alive, so its id and granted TTL are known before waiting in line.
  /// Optional: campaign() does it itself.
  ///
  /// Completes with: the lease id. Token form: void(error_code, std::int64_t).
  /// Errors: as Lease::grant; errc::invalid_argument while a campaign or another
  ///   acquire_lease() is in progress.
  /// Cancellation: terminal, partial. A lease granted as the cancel lands is kept for the next
  ///   campaign (or expires after its TTL if the participant goes).
  boost::asio::awaitable<std::int64_t> acquire_lease();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::int64_t))
                CompletionToken = default_token>
  auto async_acquire_lease(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::int64_t)>(
        std::forward<CompletionToken>(token), nullptr,
        detail::bind_start(&start_acquire_lease, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::int64_t))
                CompletionToken = default_token>
  auto async_acquire_lease(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::int64_t)>(
        std::forward<CompletionToken>(token), &diag,
        detail::bind_start(&start_acquire_lease, state_));
  }

  /// The id of the lease in use (by a campaign, a leadership, or acquire_lease()), if any.
  std::optional<std::int64_t> lease_id() const;

  /// Campaign: grants a lease (unless one from acquire_lease() is live), keeps it alive, and
  /// waits in line until this participant leads. The protocol is etcd's (and etcdctl elect's):
  /// the candidate's key, the election name and the lease in hex, is created with the lease
  /// unless it exists, and the one with the lowest create revision leads. The Client's feed of
  /// the election (one watch, shared with its Observers) says when that is this key; after a
  /// gap in that watch (a resumed stream, a compaction) a read of the key confirms it. A
  /// dropped connection, a stalled member or a restarted etcd does not cost the place in line:
  /// the key stays, the watch resumes (or the election is read again, where etcd compacted its
  /// history past the resume point), and what etcd could not answer is asked again. The key of
  /// a last leadership that ended without its owner's say, kept since (see resign()), is
  /// removed first, unsigned. A key deleted while in line (an operator's `etcdctl del`) is created again, at
  /// the back of the line. While in line the lease is not given up when its local deadline
  /// passes (etcd away longer than the TTL allows): renewals go on, and etcd's answer decides;
  /// a win then waits for a renewal answered within the deadline rule before it counts. A win
  /// then waits the takeover delay (ParticipantOptions), once for its place in line; after
  /// either wait it counts only if the feed still shows the key first (a key deleted meanwhile
  /// is created again, at the back of the line).
  ///
  /// Completes with: the leader key, once this participant leads. Token form:
  ///   void(error_code, LeaderKey).
  /// Errors: errc::resigned (resign() was called meanwhile), operation_aborted (cancelled, or
  ///   the participant destroyed meanwhile), errc::lease_expired (etcd says the lease is gone),
  ///   errc::lease_deadline_passed (no renewal answered in time at the win), errc::unreachable
  ///   or errc::timeout (etcd out of reach to grant the lease), errc::client_closed,
  ///   errc::auth_failed, errc::permission_denied, errc::invalid_argument (already leading, or
  ///   another campaign() in progress).
  /// Cancellation: terminal, partial (not total: it has effects). A cancelled campaign
  ///   withdraws the candidate: its lease is revoked, which deletes its key, also when the win
  ///   raced the cancel. It waits up to one request attempt for etcd to confirm, then completes;
  ///   the revocation goes on in the background.
  boost::asio::awaitable<LeaderKey> campaign();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, LeaderKey))
                CompletionToken = default_token>
  auto async_campaign(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, LeaderKey)>(
        std::forward<CompletionToken>(token), nullptr, detail::bind_start(&start_campaign, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, LeaderKey))
                CompletionToken = default_token>
  auto async_campaign(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, LeaderKey)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_campaign, state_));
  }

  /// Keep alive: while leading, waits until leadership ends and says why. The lease is renewed
  /// in the background whether or not this is awaited.
  ///
  /// Completes with: why leadership ended: errc::resigned, errc::lease_expired,
  ///   errc::key_deleted, errc::lease_deadline_passed (also what a lost connection to etcd
  ///   becomes: the lease could not be renewed in time), errc::client_closed,
  ///   errc::auth_failed or errc::permission_denied (the election's watch refused),
  ///   operation_aborted (the participant destroyed). After a leadership ended (and before the
  ///   next campaign), at once with its reason. A reason other than errc::resigned or
  ///   operation_aborted leaves the key in etcd until resign(), the next campaign() or the
  ///   destructor (at the latest until etcd could have expired it): call one of them once the
  ///   work has stopped. Token form: void(error_code, error_code reason).
  /// Errors: errc::not_leader when this participant never won, or campaigns now.
  /// Cancellation: terminal, partial, total: a cancelled wait changes nothing.
  boost::asio::awaitable<boost::system::error_code> keep_alive();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code,
                                                 boost::system::error_code))
                CompletionToken = default_token>
  auto async_keep_alive(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, boost::system::error_code)>(
        std::forward<CompletionToken>(token), nullptr,
        detail::bind_start(&start_keep_alive, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code,
                                                 boost::system::error_code))
                CompletionToken = default_token>
  auto async_keep_alive(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, boost::system::error_code)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_keep_alive, state_));
  }

  /// True while this participant leads: it won, nothing ended its leadership, and the lease's
  /// local deadline has not passed (on lease_clock: time suspended counts).
  bool is_leader() const;

  /// The key of the current (or last) leadership, if this participant ever won.
  std::optional<LeaderKey> leader_key() const;

  /// The lease's local deadline: of the current (or last) leadership, else of the lease in use
  /// (see Lease::deadline). A lease_clock time.
  std::optional<lease_clock::time_point> deadline() const;

  /// The TTL etcd granted for the current lease (0 before the first campaign).
  std::chrono::seconds granted_ttl() const;

  /// The takeover delay the last campaign used (ParticipantOptions::takeover_delay, or the one
  /// chosen from etcd's version); unset before the first campaign chose it.
  std::optional<std::chrono::milliseconds> takeover_delay() const;

  /// How long the last won campaign waited after its win before it returned: what the
  /// takeover delay called for. 0 when the previous leader resigned with a signature (this
  /// library's resign(), stop or destructor: its owner let it go), or long enough ago; up to
  /// takeover_delay() when its key went without its owner's say (an operator's delete or lease
  /// revoke, an expiry, a resignation by a client that does not sign, such as etcdctl). Unset
  /// before the first win.
  std::optional<std::chrono::milliseconds> takeover_wait() const;

  /// Resign: gives up leadership, or the campaign in progress: marks it ended at once (so
  /// is_leader() is false before any request is sent), stops renewing the lease, and revokes
  /// it, which deletes the key, with a fresh request deadline. While leading, the key is deleted
  /// by a signed resignation first (see the class comment): call this once the work the
  /// leadership guarded has stopped. After a leadership ended otherwise, removes the key kept
  /// since (unsigned). Not leading and not campaigning: withdraws the lease from acquire_lease()
  /// if there is one. Safe to call more than once, and at once from several coroutines.
  ///
  /// Completes: once etcd confirmed the revocation. Token form: void(error_code).
  /// Errors: errc::timeout when etcd does not confirm within the request timeout (the
  ///   revocation goes on), errc::client_closed, errc::auth_failed, errc::permission_denied
  ///   (the lease then expires after its TTL).
  /// Cancellation: terminal, partial. A cancelled resign has still ended the leadership and
  ///   stopped the renewals; the revocation goes on in the background, retried with fresh
  ///   deadlines until etcd confirms it or the lease must have expired.
  boost::asio::awaitable<void> resign();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                CompletionToken = default_token>
  auto async_resign(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code)>(
        std::forward<CompletionToken>(token), nullptr, detail::bind_start(&start_resign, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                CompletionToken = default_token>
  auto async_resign(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_resign, state_));
  }

  /// Proclaim: sets the leader's value, in a transaction guarded by the leader key's create
  /// revision.
  ///
  /// Completes: once etcd applied it. Token form: void(error_code).
  /// Errors: errc::not_leader (not leading, or etcd no longer holds this participant's key),
  ///   errc::value_too_large, errc::invalid_argument (another proclaim() in flight),
  ///   errc::timeout, errc::client_closed, auth errors.
  /// Cancellation: terminal, partial: the value may or may not have been set.
  boost::asio::awaitable<void> proclaim(std::string value);

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                CompletionToken = default_token>
  auto async_proclaim(std::string value, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code)>(
        std::forward<CompletionToken>(token), nullptr,
        detail::bind_start(&start_proclaim, state_, std::move(value)));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                CompletionToken = default_token>
  auto async_proclaim(std::string value, diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code)>(
        std::forward<CompletionToken>(token), &diag,
        detail::bind_start(&start_proclaim, state_, std::move(value)));
  }

  /// Put if leader: writes `key` = `value` only if this participant's leader key still exists
  /// with the revision it won with. etcd checks that in the same transaction, so a write from a
  /// deposed leader is refused even when it is late. Not retried: a write etcd may have applied
  /// is not sent twice.
  ///
  /// Completes with: the write's revision. Token form: void(error_code, std::int64_t).
  /// Errors: errc::not_leader (refused, or not leading), errc::value_too_large,
  ///   errc::invalid_argument before anything is sent for a key under the prefix of an election
  ///   used on this Client (its own `name/` included: such a key would stand in that line for
  ///   ever), errc::timeout, errc::unreachable, errc::client_closed, auth errors.
  /// Cancellation: terminal, partial: the write may have landed (fenced: only while this
  ///   participant's key was first in line).
  boost::asio::awaitable<std::int64_t> put_if_leader(std::string key, std::string value);

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::int64_t))
                CompletionToken = default_token>
  auto async_put_if_leader(std::string key, std::string value, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::int64_t)>(
        std::forward<CompletionToken>(token), nullptr,
        detail::bind_start(&start_put_if_leader, state_, std::move(key), std::move(value)));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::int64_t))
                CompletionToken = default_token>
  auto async_put_if_leader(std::string key, std::string value, diagnostics& diag,
                           CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::int64_t)>(
        std::forward<CompletionToken>(token), &diag,
        detail::bind_start(&start_put_if_leader, state_, std::move(key), std::move(value)));
  }

  /// Leader: the election's current leader as etcd sees it now (a linearizable read of the key
  /// with the lowest create revision), or none.
  ///
  /// Completes with: std::optional<LeaderInfo>. Token form:
  ///   void(error_code, std::optional<LeaderInfo>).
  /// Errors: errc::timeout, errc::unreachable, errc::client_closed, auth errors.
  /// Cancellation: terminal, partial, total: a read leaves nothing behind.
  boost::asio::awaitable<std::optional<LeaderInfo>> leader();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code,
                                                 std::optional<LeaderInfo>))
                CompletionToken = default_token>
  auto async_leader(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::optional<LeaderInfo>)>(
        std::forward<CompletionToken>(token), nullptr, detail::bind_start(&start_leader, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code,
                                                 std::optional<LeaderInfo>))
                CompletionToken = default_token>
  auto async_leader(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::optional<LeaderInfo>)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_leader, state_));
  }

  /// Candidates: every candidate in the election's line, in order (the leader first), from one
  /// linearizable read of the prefix. Observer::candidates() has the same from its feed,
  /// without a read.
  ///
  /// Completes with: the line. Token form: void(error_code, std::vector<LeaderInfo>).
  /// Errors: errc::timeout, errc::unreachable, errc::client_closed, auth errors.
  /// Cancellation: terminal, partial, total: a read leaves nothing behind.
  boost::asio::awaitable<std::vector<LeaderInfo>> candidates();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code,
                                                 std::vector<LeaderInfo>))
                CompletionToken = default_token>
  auto async_candidates(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::vector<LeaderInfo>)>(
        std::forward<CompletionToken>(token), nullptr,
        detail::bind_start(&start_candidates, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code,
                                                 std::vector<LeaderInfo>))
                CompletionToken = default_token>
  auto async_candidates(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::vector<LeaderInfo>)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_candidates, state_));
  }

  /// An Observer of this participant's election.
  Observer observe();

 private:
  friend struct detail::access;
  template <class... Values>
  using Handler = boost::asio::any_completion_handler<void(boost::system::error_code, Values...)>;

  // The compiled side of each token form (participant.cpp).
  // The compiled side of each token form (participant.cpp), on the state they were made with.
  using State = std::shared_ptr<detail::ParticipantState>;
  static void start_acquire_lease(State s, Handler<std::int64_t> handler, diagnostics* diag);
  static void start_campaign(State s, Handler<LeaderKey> handler, diagnostics* diag);
  static void start_keep_alive(State s, Handler<boost::system::error_code> handler,
                               diagnostics* diag);
  static void start_resign(State s, Handler<> handler, diagnostics* diag);
  static void start_proclaim(State s, Handler<> handler, diagnostics* diag, std::string value);
  static void start_put_if_leader(State s, Handler<std::int64_t> handler, diagnostics* diag,
                                  std::string key, std::string value);
  static void start_leader(State s, Handler<std::optional<LeaderInfo>> handler, diagnostics* diag);
  static void start_candidates(State s, Handler<std::vector<LeaderInfo>> handler,
                               diagnostics* diag);

  std::shared_ptr<detail::ParticipantState> state_;
};

}  // namespace election
