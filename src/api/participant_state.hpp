// The state behind a Participant, shared by its operations (an operation in flight holds it,
// so the Participant may go meanwhile): the lease in use, the campaign in progress, the current
// term, the last withdrawal. The operations are split by job: participant_campaign.cpp
// (campaign, acquire_lease, keep_alive, resign), participant_fenced.cpp (proclaim and
// put_if_leader, fenced by the leader key's create revision), participant.cpp (the reads and
// the public object).
#pragma once

#include "election/participant.hpp"

#include "api/session_state.hpp"
#include "base/keys.hpp"
#include "base/throw.hpp"
#include "engine/campaign.hpp"
#include "engine/election_feed.hpp"
#include "engine/entry_batcher.hpp"
#include "engine/term.hpp"
#include "lease/lease_state.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace election::detail {

namespace asio = boost::asio;
using boost::system::error_code;

/// A campaign in progress, and how it is stopped from outside (resign, the destructor).
struct CampaignRun {
  void request_stop(error_code why, std::string what) {
    if (stopped) return;
    stopped = true;
    reason = why;
    message = std::move(what);
    cut.emit(asio::cancellation_type::terminal);
  }
  // The campaign runs bound to `cut`: stopping it is a cancellation, and the caller's own
  // cancellation is passed on to it (campaign_of). No race of two coroutines for every
  // campaign in line.
  asio::cancellation_signal cut;
  // Its turn among the Client's campaigns entering their lines (ClientCore::entry_gate):
  // given on once the key is in line, or when the campaign ends.
  CallLimiter::Slot entering;
  bool stopped = false;
  error_code reason;
  std::string message;
};

class ParticipantState : public std::enable_shared_from_this<ParticipantState> {
 public:
  ParticipantState(std::shared_ptr<ClientCore> core, std::string election, std::string value,
                   ParticipantOptions options, std::shared_ptr<SessionState> session)
      : core(std::move(core)),
        election(std::move(election)),
        value(std::move(value)),
        options(options),
        session(std::move(session)) {}

  // Takes the lease out of use: no renewal from now on, its revocation in the background.
  // A Session's lease is not this participant's to revoke: its key is deleted instead.
  // Returns that withdrawal, or the one still running from before, or nothing.
  //
  // `sign`: the owner chose to end a term that still led, and no work it guards still runs
  // (chosen_end()): its key is resigned with a signature, so that the next candidate leads
  // without the takeover delay. Every other removal is unsigned, and the next one waits.
  std::shared_ptr<Withdrawal> withdraw(bool sign = false) {
    kept.reset();  // whatever kept an ended term's key, it goes now
    kept_until.reset();
    std::optional<Signature> signature;
    if (sign && lease && term && term->lease() == lease)
      signature = Signature{election, term->key().key, term->key().create_revision};
    if (lease && session) {
      auto key = candidate_key(election, lease->id);
      withdrawal = Withdrawal::start_key(std::exchange(lease, nullptr), std::move(key),
                                         std::move(signature), after_entry(key));
    } else if (lease) {
      withdrawal = Withdrawal::start(std::exchange(lease, nullptr), std::move(signature));
    }
    if (withdrawal && withdrawal->finished() && !withdrawal->result()) return nullptr;
    return withdrawal;
  }

  // Whether ending the current term now is its owner's choice with its work stopped: the term
  // still leads (not past its lease's local deadline), and no work a Leadership runs on it is
  // running (a resign() from inside that work is no word that the work has stopped).
  bool chosen_end() const { return term && term->leading() && working == 0; }

  // The current term ended without its owner's say (its lease's local deadline, a failed
  // feed...). Its key may still be in etcd. It stays there, renewed no more, until the owner's
  // work has stopped (resign(), the next campaign, the destructor; a Leadership once its work
  // has returned), and then goes unsigned: the next candidate waits the takeover delay after
  // that, so it cannot lead while the work still runs. At the latest it goes when etcd could
  // have expired it (the lease's TTL from the send time of its last answered renewal): an own
  // lease is renewed no more from now; a Session's lives on for its other elections, so its key
  // is deleted then. A key that is gone already (deleted, its lease expired or revoked) leaves
  // nothing to keep: the lease is withdrawn at once.
  void term_ended(const Term& ended) {
    const auto& why = ended.reason();
    if (why == errc::resigned || why == asio::error::operation_aborted) return;  // the caller's
    if (!lease || ended.lease() != lease || why == errc::key_deleted ||
        why == errc::lease_expired || why == errc::lease_revoked || why == errc::client_closed) {
      withdraw();
      return;
    }
    if (!lease->shared) {
      if (core->keep_alive_hub) core->keep_alive_hub->remove(lease->id);
      lease->lose(why);  // out of use: the next campaign grants another
    }
    const auto until = lease->clock.last_acknowledged_send() + lease->clock.ttl();
    // A steady timer, not a BootTimer (a timerfd each: ten thousand terms of a Session ending
    // together would take as many descriptors). Suspended time does not count, so after a
    // suspend the key goes later, never sooner: the safe side for a fallback.
    auto timer = std::make_shared<asio::steady_timer>(core->executor());
    timer->expires_after(std::max(until - core->time().now(), TimeSource::duration::zero()));
    kept = timer;
    kept_until = until;
    timer->async_wait([weak = weak_from_this(), held = std::weak_ptr(timer)](error_code ec) {
      auto self = weak.lock();
      if (!ec && self && self->kept && self->kept == held.lock()) self->withdraw();
    });
  }

  // The Txn of a campaign's entry still unanswered for `key` (a Session's): its deletion waits
  // for that, so that a Txn applied after the delete cannot leave the key behind.
  std::shared_ptr<AsyncEvent> after_entry(const std::string& key) const {
    return core->entry_batcher ? core->entry_batcher->unanswered(key) : nullptr;
  }

  asio::awaitable<Won> run(std::shared_ptr<CampaignRun> campaign_run, bool only_if_first) {
    // Its own coroutine, bound to the run's `cut`: whatever comes through that (a stop, or the
    // caller's cancellation as campaign()'s filter let it) is for the campaign.
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    auto delay = options.takeover_delay;
    if (!delay) delay = default_takeover_delay(co_await core->server_version());
    chosen_delay = delay;
    waited.reset();
    if (session) {
      // The last key's deletion lands first (this participant's, or a destroyed one's in the
      // same election): a retried delete must not take the new key.
      if (auto w = withdrawal; w && !w->finished()) co_await w->done.wait();
      if (auto it = session->leaving.find(election); it != session->leaving.end()) {
        auto w = it->second.lock();
        if (w && !w->finished()) co_await w->done.wait();
        session->leaving.erase(election);
      }
      if (!lease || lease->lost()) lease = co_await session->current();
    }
    // Named, not a temporary in the co_await: g++ 12 destroys such a temporary twice.
    // The lease lost while in line stops the campaign as a resign would, with the lease's
    // reason.
    auto lost = [weak = std::weak_ptr<CampaignRun>(campaign_run)](error_code reason) {
      if (auto r = weak.lock())
        r->request_stop(reason, "campaign: the lease was lost while waiting in line");
    };
    // In line: the turn to enter goes to the next campaign of the Client.
    auto in_line = [weak = std::weak_ptr<CampaignRun>(campaign_run), then = on_in_line] {
      if (auto r = weak.lock()) r->entering.reset();
      if (then) then();
    };
    CampaignRequest request{core,   election, value,         options.ttl, options.lease.margin,
                            *delay, in_line,  lost,          only_if_first, last_fence};
    co_return co_await run_campaign(request, lease);
  }

  // The Participant is gone: whatever runs stops, the lease is withdrawn, the names released;
  // operations started later fail with errc::object_gone.
  void end() {
    gone = true;
    const bool chosen = chosen_end();
    if (campaign)
      campaign->request_stop(asio::error::operation_aborted,
                             "campaign: the participant was destroyed");
    if (term) term->end(asio::error::operation_aborted);
    auto withdrawn = withdraw(chosen);  // the revocation is in flight before this returns
    core->release_election(election);
    if (session) {
      session->release(election);
      session->leave(election, withdrawn);
    }
  }

  // Throws errc::object_gone once the Participant is destroyed.
  void check_live(const char* what) const {
    if (gone) throw_error(errc::object_gone, std::string(what) + ": the Participant was destroyed");
  }

  void start_term(const Won& won) {
    auto t = std::make_shared<Term>(won.key, won.read_revision + 1, lease,
                                    ElectionFeed::of(core, election));
    term = t;
    last_fence = std::max(last_fence, won.key.create_revision);
    // A term that ends withdraws its lease: at once when its owner ends it (the caller does,
    // signed or not), once the work has stopped otherwise (term_ended).
    t->start([weak = weak_from_this()](Term& ended) {
      if (auto self = weak.lock(); self && self->term.get() == &ended) self->term_ended(ended);
    });
  }

  std::shared_ptr<ClientCore> core;
  std::string election;
  std::string value;
  ParticipantOptions options;
  std::shared_ptr<LeaseState> lease;       // in use: by the campaign, the term, acquire_lease()
  std::shared_ptr<Term> term;              // the current or last leadership
  std::shared_ptr<CampaignRun> campaign;   // the campaign in progress
  std::shared_ptr<Withdrawal> withdrawal;  // the last lease taken out of use
  std::shared_ptr<SessionState> session;   // for a participant on a Session's lease
  std::optional<std::chrono::milliseconds> chosen_delay;
  std::optional<std::chrono::milliseconds> waited;  // of the delay, by the last win
  // An ended term's key kept until its work has stopped (term_ended): the timer that removes it
  // at the latest, and when.
  std::shared_ptr<asio::steady_timer> kept;
  std::optional<TimeSource::time_point> kept_until;
  // Works a Leadership runs on this participant's term, running now.
  int working = 0;
  // The create revision of the last term: a later term's fence is greater (campaign.cpp).
  std::int64_t last_fence = 0;
  bool proclaiming = false;
  bool acquiring = false;
  bool gone = false;                 // the Participant was destroyed
  std::function<void()> on_in_line;  // CampaignRequest::in_line of every campaign
};

// Sets a flag for a scope: one call of a kind at a time.
class Busy {
 public:
  explicit Busy(bool& flag) : flag_(flag) { flag_ = true; }
  ~Busy() { flag_ = false; }
  Busy(const Busy&) = delete;
  Busy& operator=(const Busy&) = delete;

 private:
  bool& flag_;
};

/// A campaign; `only_if_first` (a lock's try): fails with errc::lock_held, its key withdrawn,
/// once another key is seen first in line.
asio::awaitable<LeaderKey> campaign_of(std::shared_ptr<ParticipantState> s, bool only_if_first);
asio::awaitable<std::int64_t> acquire_lease_of(std::shared_ptr<ParticipantState> s);
asio::awaitable<boost::system::error_code> keep_alive_of(std::shared_ptr<ParticipantState> s);
asio::awaitable<void> resign_of(std::shared_ptr<ParticipantState> s);
asio::awaitable<void> proclaim_of(std::shared_ptr<ParticipantState> s, std::string value);
asio::awaitable<std::int64_t> put_if_leader_of(std::shared_ptr<ParticipantState> s, std::string key,
                                               std::string value);

}  // namespace election::detail
