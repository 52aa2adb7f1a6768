// election::Leadership: the leader loop that never gives up: campaign, run the work while
// leading, stop it when leadership ends, campaign again; with hooks, health and metrics.
#pragma once

#include "election/client.hpp"
#include "election/clock.hpp"
#include "election/detail/initiate.hpp"
#include "election/error.hpp"
#include "election/metrics.hpp"
#include "election/observer.hpp"
#include "election/participant.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace election {

struct LeadershipOptions {
  /// The participant's: TTL, lease margin, takeover delay.
  ParticipantOptions participant{};
  /// The pause before campaigning again after a failure or a lost leadership: it doubles from
  /// `retry_initial` to `retry_max`, each drawn from [d/2, d] so that many processes that failed
  /// together do not retry in lock-step; it starts again from `retry_initial` after a win.
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{std::chrono::seconds(5)};
  /// health() turns unhealthy while it leads and no renewal has been answered for longer than
  /// this: the keep-alive is wedged (a blocked executor, a stuck process), as a working one has
  /// ended the leadership by then, at its deadline (TTL - margin). At least the TTL; unset: the
  /// TTL.
  std::optional<std::chrono::milliseconds> renewal_stale_after{};
  /// health() turns unhealthy when campaigning has failed, with no success in between (a win,
  /// or a key in line), for longer than this. Positive.
  std::chrono::milliseconds failing_for{std::chrono::seconds(60)};
};

/// A campaign is starting: the lease it waits in line with. Reported again, once its key is in
/// line, if the campaign had to grant another (the lease acquired for it was lost first).
struct CampaignStarted {
  std::int64_t lease;
  std::chrono::seconds ttl;  ///< as etcd granted it
};

/// A leadership ended, and its work has stopped.
struct LeadershipLost {
  LeaderKey key;
  /// Why: an election::errc (resigned, lease_expired, key_deleted, lease_deadline_passed,
  /// client_closed, work_finished, work_failed, ...), or operation_aborted when the Leadership
  /// was stopped; reason_name() has a short name for each.
  boost::system::error_code reason;
  std::string message;  ///< what the work threw, when it ended by throwing
  /// The lease's local deadline when the leadership ended (Participant::deadline()).
  std::optional<lease_clock::time_point> deadline;
  /// Whether the work had stopped before another candidate could lead, given how the
  /// leadership ended: a key deleted or a lease gone (or resigned by the work itself) lets the
  /// next one in the takeover delay after that; a leadership ended at its lease's local
  /// deadline, or by a lost watch, keeps its key (renewed no more) until the work has stopped,
  /// so the limit is when etcd could expire the lease (its TTL from the send time of the last
  /// answered renewal); a stop() keeps the leadership, renewed, until the work has stopped, and
  /// sets no limit while it lasts. False: it ran on after its turn had ended (see Leadership,
  /// and LeadershipHooks::work_overran).
  bool work_stopped_in_time = true;
};

/// An error the loop retries after a pause.
struct RetryScheduled {
  boost::system::error_code error;
  std::string message;
  std::chrono::milliseconds next_attempt_in;
};

/// Callbacks, each optional, all called on the Client's executor. They must not block, and
/// must not throw.
struct LeadershipHooks {
  /// A campaign starts (its lease granted): it waits in line.
  std::function<void(const CampaignStarted&)> campaigning;
  /// This participant leads; the work starts right after.
  std::function<void(const LeaderKey&)> elected;
  /// The leadership ended and the work has stopped; the next campaign starts after a pause.
  /// When the work returned or threw, this comes before the resign lets another candidate in.
  std::function<void(const LeadershipLost&)> lost;
  /// The leadership ended, the work was cancelled and it is still running when another
  /// candidate could lead (see LeadershipLost::work_stopped_in_time): from now on two processes
  /// may act as leader. Called at that instant (`lost` follows once the work has stopped).
  std::function<void(const LeaderKey&)> work_overran;
  /// Every leadership change of the election seen, this participant's and others', and "no
  /// leader" (LeaderEvent::has_leader() false).
  std::function<void(const LeaderEvent&)> leader_changed;
  /// A campaign failed; the next starts after the pause.
  std::function<void(const RetryScheduled&)> retrying;
};

/// What a liveness probe asks (Leadership::health()).
struct Health {
  enum class State { idle, campaigning, leading, retrying, stopped };
  State state = State::idle;
  bool healthy = true;
  /// Why it is unhealthy; empty when healthy.
  std::string reason;
};

/// "idle", "campaigning", "leading", "retrying", "stopped".
const char* state_name(Health::State state);

/// A short stable name for a reason a leadership ended: "resigned", "lease-expired",
/// "lease-revoked", "key-deleted", "deadline-passed", "client-closed", "work-finished",
/// "work-failed", "shutdown", or "category:value" for anything else.
std::string reason_name(const boost::system::error_code& reason);

namespace detail {
class LeadershipState;
struct access;
}  // namespace detail

/// The leader loop that never gives up. run() campaigns; while this process leads it runs the
/// work; when the leadership ends (the lease lost or past its deadline, the key deleted, the
/// work finished or failed) it cancels the work, waits until the work has finished, reports
/// the loss, and campaigns again after a jittered pause. It goes on for as long as it runs,
/// through every error that passes by itself (etcd away, no raft leader, a member frozen) and
/// every lost leadership; it ends only when stopped (stop(), or cancelling run()), and for an
/// error that needs a person: errc::auth_failed, errc::permission_denied, errc::tls_failed,
/// errc::invalid_argument, errc::invalid_ttl, errc::ttl_refused or errc::value_too_large (bad
/// input), errc::client_closed. Stopping cancels the work and keeps the leadership, its lease
/// renewed, until the work has stopped; then resigns with a signature and revokes the lease with
/// fresh deadlines, so the next candidate leads at once. A work that returns is resigned the
/// same way. A leadership that ends otherwise (the lease's deadline, a deleted key...) is never
/// signed: its key is removed once the work has stopped, and the next candidate waits the
/// takeover delay after that; so nobody else leads while the work runs, unless it overruns.
///
/// Writing the work: it is a coroutine, cancelled (terminal) when the leadership ends, and it
/// must stop at that cancellation: its pending co_await throws operation_aborted; let it
/// propagate (catch it only to clean up, then rethrow). It must not block the executor (run
/// blocking calls elsewhere and co_await their completion), since the keep-alive and the
/// deadline run on the same one. Work that ignores the cancellation, or blocks, acts after its
/// turn has ended: the one way left to do so, reported by LeadershipHooks::work_overran,
/// LeadershipLost::work_stopped_in_time, LeadershipMetrics::work_overruns and health(). Writes
/// made through Participant::put_if_leader are fenced by etcd whatever the work does. To hand
/// over from inside the work, return from it (the resignation is signed once it has returned);
/// a `me.resign()` from inside the work is unsigned, since the work still runs.
///
/// Thread safety: distinct objects: safe. stop(), health() and metrics() may be called from any
/// thread; everything else on the Client's executor. Lifetime: the Client must outlive the
/// Leadership; a running loop keeps its own state alive, and destroying the Leadership stops it.
class Leadership {
 public:
  /// The work run while leading: `me` is this Leadership's participant (put_if_leader(),
  /// deadline(), is_leader()), `key` the leadership's key. Returning ends the leadership
  /// (resigned, reason "work-finished"); throwing ends it too (reason "work-failed", the
  /// exception's text in LeadershipLost::message); either way run() campaigns again.
  using Work = std::function<boost::asio::awaitable<void>(Participant& me, const LeaderKey& key)>;

  /// Throws errc::invalid_argument (the message names the option) for a missing work, retry
  /// bounds that are not positive or not in order, a renewal_stale_after under the TTL, a
  /// failing_for that is not positive; and what Participant's constructor throws.
  Leadership(Client& client, std::string election, std::string value, Work work,
             LeadershipOptions options = {}, LeadershipHooks hooks = {});
  /// The same on `session`'s lease, shared with the session's other elections: its TTL and
  /// lease options are the session's (those in options.participant are not used), and what
  /// Participant's Session constructor throws is thrown here too. Losing the session's lease
  /// ends this leadership like any other loss, and run() campaigns again on the session's next
  /// lease; stopping this Leadership deletes its key and leaves the lease alone.
  Leadership(Session& session, std::string election, std::string value, Work work,
             LeadershipOptions options = {}, LeadershipHooks hooks = {});
  Leadership(Leadership&&) noexcept;
  Leadership& operator=(Leadership&&) noexcept;
  /// Stops it (see stop()) if it runs.
  ~Leadership();

  const std::string& election() const;

  /// Run: the loop, until stopped. A stopped Leadership stays stopped: run() again completes at
  /// once.
  ///
  /// Completes: once stopped, after the work has stopped and the resignation is confirmed by
  ///   etcd. Token form: void(error_code).
  /// Errors: those that need a person (see the class comment), after the same clean-up; when
  ///   stopped, the error that kept etcd from confirming the resignation (errc::timeout,
  ///   errc::unreachable, ...: the lease then expires after its TTL, its revocation retried in
  ///   the background meanwhile); errc::invalid_argument when it runs already;
  ///   operation_aborted when cancelled.
  /// Cancellation: terminal, partial: as stop(), then operation_aborted.
  /// Thread safety: both forms may be started from any thread or executor; the loop runs on
  ///   the Client's executor.
  boost::asio::awaitable<void> run();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                CompletionToken = default_token>
  auto async_run(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code)>(
        std::forward<CompletionToken>(token), nullptr, detail::bind_start(&start_run, state_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                CompletionToken = default_token>
  auto async_run(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_run, state_));
  }

  /// Asks run() to end: the work is cancelled and waited for (the leadership held and renewed
  /// meanwhile, however long the work takes: that is no overrun), the leadership resigned
  /// (signed), the lease revoked; run() then completes. Safe from any thread, and more than
  /// once; before run() it makes run() end at once.
  void stop();

  /// The loop's state, and whether a liveness check should pass: unhealthy while leading with
  /// no renewal answered for longer than LeadershipOptions::renewal_stale_after, while the work
  /// runs on after etcd could have let another candidate in, and when campaigning has failed
  /// for longer than LeadershipOptions::failing_for; healthy while simply waiting in line.
  /// Safe from any thread, and while the executor is blocked (that is when it matters).
  Health health() const;

  /// What it has done so far. Safe from any thread.
  LeadershipMetrics metrics() const;

  /// The participant the loop campaigns with (to read is_leader(), leader_key(), deadline()).
  const Participant& participant() const;

 private:
  friend struct detail::access;
  static void start_run(
      std::shared_ptr<detail::LeadershipState> state,
      boost::asio::any_completion_handler<void(boost::system::error_code)> handler,
      diagnostics* diag);

  std::shared_ptr<detail::LeadershipState> state_;
};

}  // namespace election
