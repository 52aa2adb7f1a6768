// One simulated process running a Leadership: the library's sans-io decisions (CampaignEngine,
// RenewalPlan, LeaseClock, LeaderTracker, Backoff, RttEstimator) driven by a short transcription
// of what src/engine/campaign.cpp, lease/keep_alive.cpp, engine/election_feed.cpp,
// transport/watch_hub.cpp, engine/term.cpp, lease/withdrawal.cpp, api/participant_*.cpp and
// api/leadership.cpp do with real I/O, the I/O going to the simulated world instead. The decisions are the library's; only the plumbing is here.
#pragma once

#include "world.hpp"

#include "base/backoff.hpp"
#include "base/lease_clock.hpp"
#include "base/rtt.hpp"
#include "engine/campaign_engine.hpp"
#include "engine/leader_tracker.hpp"
#include "lease/renewal_plan.hpp"

#include <set>

namespace election::sim {

/// A lease as LeaseState holds it: the clock the plan reads, the hold flag, its loss.
struct LeaseRec {
  std::int64_t id = 0;
  detail::LeaseClock clock;
  bool hold = false;
  bool lost = false;
  errc lost_reason{};
};

class Client {
 public:
  Client(World& world, int index, std::uint64_t seed);

  /// Starts the Leadership's loop.
  void start();

  int index() const { return index_; }
  const std::string& name() const { return name_; }
  /// Participant::is_leader(): a term that has not ended, on a lease not lost whose local
  /// deadline has not passed.
  bool believes() const;
  using TermInfo = ClientTerm;
  /// The term it believes in, if believes().
  std::optional<TermInfo> belief() const;
  /// Every change up to this revision has reached the election's feed.
  std::int64_t feed_revision() const { return revision_; }
  /// A keep-alive answered TTL 0 for `lease`: the client has heard of its end.
  bool told_lost(std::int64_t lease) const { return told_lost_.count(lease) != 0; }
  std::optional<Time> withdrawn_at(std::int64_t lease) const {
    auto it = withdrawn_.find(lease);
    if (it == withdrawn_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::int64_t> lease_id() const {
    if (!lease_) return std::nullopt;
    return lease_->id;
  }
  /// The keys its campaigns and terms use, for the faults to aim at.
  std::optional<std::int64_t> term_lease() const;

  // Told by the world: a message from etcd, or a stream's end.
  void on_keep_alive(std::uint64_t stream, std::int64_t lease, std::chrono::seconds ttl);
  void on_stream_broken(std::uint64_t stream);
  struct WatchMessage {
    bool created = false;
    bool progress = false;
    std::int64_t watch_id = -1;
    std::int64_t compact_revision = 0;
    std::vector<Event> events;
    std::int64_t header_revision = 0;
  };
  void on_watch(std::uint64_t stream, const WatchMessage& m);

 private:
  using Do = detail::CampaignEngine::Do;
  using Step = detail::CampaignEngine::Step;

  void trace(const std::string& what) const;

  // --- transport: ClientCore::call_retrying ------------------------------------------------
  struct Call;
  void call(const char* what, bool needs_leader, std::function<Reply(Store&)> apply,
            std::function<void(std::optional<Reply>)> done);
  void attempt(std::shared_ptr<Call> c);
  std::chrono::milliseconds attempt_timeout() const;

  // --- keep-alive: KeepAliveHub --------------------------------------------------------------
  void hub_add(const std::shared_ptr<LeaseRec>& lease, Duration grant_rtt);
  void hub_remove(std::int64_t id);
  void hub_drive();
  void hub_poke();
  void hub_apply(const detail::RenewalPlan::Action& a);
  void hub_lose(std::int64_t id, errc reason);

  // --- the lease: LeaseState -----------------------------------------------------------------
  void lose(const std::shared_ptr<LeaseRec>& lease, errc reason);
  bool past_deadline(const LeaseRec& lease) const { return lease.clock.expired(world_.now()); }

  // --- watch: WatchHub -----------------------------------------------------------------------
  void watch(std::string key, std::string end, std::int64_t start);
  void watch_drive();
  void watch_wake(Time at);
  void watch_open();
  void watch_drop();
  Duration stall_timeout() const;

  // --- the election's feed: ElectionFeed ------------------------------------------------------
  void feed_read();
  void feed_sync(std::uint64_t run);
  void feed_events(const std::vector<Event>& events);
  void feed_viewed();

  // --- the campaign: run_campaign -------------------------------------------------------------
  void campaign_start();
  void campaign_run();
  void campaign_view();
  void enter_line();
  void campaign_lost_lease();
  void campaign_failed(const std::string& why);
  detail::CampaignEngine::View view() const;

  // --- the term, the withdrawal, the Leadership's loop --------------------------------------
  void acquire();
  void grant(std::function<void(std::shared_ptr<LeaseRec>)> done);
  void won();
  void term_view();
  void term_end(errc why);
  void withdraw();
  void withdraw_lease(std::shared_ptr<LeaseRec> lease, std::optional<TermInfo> sign);
  void revoke_until(std::shared_ptr<LeaseRec> lease, Time give_up,
                    std::shared_ptr<detail::Backoff> backoff);
  void lost_leadership();
  void work();
  void again();

  World& world_;
  int index_;
  std::string name_;
  std::string value_;
  Rng rng_;

  // transport
  detail::RttEstimator rtt_;
  int next_member_ = 0;

  // keep-alive
  detail::RenewalPlan plan_;
  std::map<std::int64_t, std::shared_ptr<LeaseRec>> hub_leases_;
  std::vector<std::shared_ptr<LeaseRec>> kept_;
  std::map<detail::RenewalPlan::StreamId, std::uint64_t> ka_streams_;
  bool hub_running_ = false;
  std::uint64_t hub_wake_ = 0;  // generation of the hub's timer: a poke moves it on

  // watch
  std::optional<std::uint64_t> w_stream_;
  std::uint64_t w_generation_ = 0;
  std::optional<Time> progress_sent_;
  Time last_heard_{};
  bool heard_on_stream_ = false;
  int silent_stalls_ = 0;
  Time retry_at_{};
  detail::Backoff w_backoff_;
  detail::RttEstimator w_rtt_;
  std::uint64_t w_wake_ = 0;
  bool w_running_ = false;
  struct WatchState {
    std::int64_t id;
    std::string key, end;
    std::int64_t next;
  };
  std::optional<WatchState> watch_;
  std::int64_t last_watch_id_ = 0;

  // feed
  detail::LeaderTracker tracker_;
  bool synced_ = false;
  std::int64_t revision_ = 0;
  bool vacancy_signed_ = false;
  Time vacancy_seen_{};
  std::uint64_t gaps_ = 0;
  std::uint64_t feed_run_ = 0;
  detail::Backoff feed_backoff_;

  // participant
  std::shared_ptr<LeaseRec> lease_;  // the slot
  std::optional<detail::CampaignEngine> engine_;
  Step step_{Do::grant};
  std::uint64_t campaign_ = 0;  // generation: a stale callback of an ended step is dropped
  bool campaigning_ = false;
  std::shared_ptr<LeaseRec> c_lease_;  // the campaign's own hold
  std::string own_key_;
  std::uint64_t gaps_at_entry_ = 0;
  Time give_up_{};  // await_renewal's

  struct Term {
    TermInfo key;
    std::int64_t from;
    std::shared_ptr<LeaseRec> lease;
    bool ended = false;
    errc reason{};
  };
  std::optional<Term> term_;
  detail::Backoff backoff_;  // the Leadership's, between campaigns
  bool leading_phase_ = false;
  std::uint64_t work_ = 0;  // generation of the work of the current term

  std::set<std::int64_t> told_lost_;
  std::map<std::int64_t, Time> withdrawn_;
};

}  // namespace election::sim
