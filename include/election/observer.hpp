// election::Observer: follow who leads an election.
#pragma once

#include "election/client.hpp"
#include "election/detail/initiate.hpp"
#include "election/error.hpp"
#include "election/values.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace election {

namespace detail {
class ObserverState;
class ClientCore;
}  // namespace detail

class Participant;

/// An async generator of leadership changes: `for (;;) { auto e = co_await observer.next(); }`.
///
/// The first event is the state when observing began (the first call of next()): the current
/// leader, or "no leader".
/// Then one event per change, in etcd's order: a new leader, a proclaim (same leader, new value),
/// and "no leader" when the leader goes without a successor (etcd's own Observe never says so).
/// Built on the Client's feed of the election: one watch per election per Client however many
/// Observers (and campaigns) follow it, on the Client's one Watch stream. After a broken or
/// stalled stream, an etcd restart or a member failover it resumes from the last revision seen,
/// so no change is missed or repeated; after a compaction it re-reads the election and reports
/// only a leader that differs from the last one reported.
///
/// Failures that pass by themselves (etcd out of reach, no raft leader, a token renewed while
/// etcd is away) are retried inside, for ever, with backoff: next() just waits on. A failure
/// that needs the user (errc::permission_denied, errc::auth_failed) is thrown by one next();
/// the next call tries again.
///
/// Destroying an Observer while its next() waits ends that wait with operation_aborted.
///
/// Each asynchronous operation comes as an awaitable that throws election::error, and in a
/// completion-token form (see Participant) that completes with an error_code first; both run
/// on the Client's executor, start from any thread, and hold the object's state from the
/// moment they are made (one launched after the object was destroyed, or made on an object
/// moved from, fails with errc::object_gone).
///
/// Thread safety: distinct objects: safe; shared objects: unsafe; the accessors on the Client's
/// executor; destroying from any thread.
class Observer {
 public:
  /// Throws errc::invalid_election_name for an empty name or one ending in '/', and
  /// errc::invalid_argument for a name that nests with another one used on the same Client
  /// ("a" and "a/b").
  Observer(Client& client, std::string election);
  Observer(Observer&&) noexcept;
  Observer& operator=(Observer&&) noexcept;
  ~Observer();

  const std::string& election() const;

  /// Next: waits for the next change of leadership (the first call: the state now). While etcd
  /// cannot be reached it keeps retrying (with backoff) and waits on; race it against a timer
  /// to bound the wait.
  ///
  /// Completes with: the LeaderEvent. Token form: void(error_code, LeaderEvent).
  /// Errors: errc::client_closed, errc::auth_failed and errc::permission_denied (each thrown by
  ///   one call; the next call tries again), errc::invalid_argument when another next() is
  ///   already waiting on this Observer, operation_aborted when cancelled or when the Observer
  ///   is destroyed meanwhile.
  /// Cancellation: terminal, partial, total. A cancelled wait loses nothing, also when an event
  ///   arrives at the moment of the cancel: the next call returns it.
  boost::asio::awaitable<LeaderEvent> next();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, LeaderEvent))
                CompletionToken = default_token>
  auto async_next(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, LeaderEvent)>(
        std::forward<CompletionToken>(token), nullptr, detail::bind_start(&start_next, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, LeaderEvent))
                CompletionToken = default_token>
  auto async_next(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, LeaderEvent)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_next, state_));
  }

  /// The election's line as this Observer's feed has it now, without a read: every candidate,
  /// the leader first (the line in create-revision order, etcd's). Unset until the first
  /// next() has read the election, and while the feed is stopped after a failure.
  std::optional<std::vector<LeaderInfo>> candidates() const;

 private:
  friend class Participant;
  static void start_next(
      std::shared_ptr<detail::ObserverState> state,
      boost::asio::any_completion_handler<void(boost::system::error_code, LeaderEvent)> handler,
      diagnostics* diag);
  Observer(const std::shared_ptr<detail::ClientCore>& core, std::string election);

  std::shared_ptr<detail::ObserverState> state_;
};

}  // namespace election
