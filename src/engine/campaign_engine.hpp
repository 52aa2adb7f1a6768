// The decisions of one campaign, without I/O. The driver (campaign.cpp) does what each Step
// says and reports what came of it; the engine says what to do next.
#pragma once

#include "base/mutation.hpp"
#include "election/error.hpp"

#include <boost/system/error_code.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace election::detail {

/// etcd's election protocol, as etcdctl elect runs it, decided step by step:
///
///   grant a lease (unless one is live) -> enter the line: a guarded Txn creates the key
///   `name/hex(lease)` with the lease unless it exists -> wait until the election's view shows
///   this key first (the lowest create revision) -> if no renewal has been answered within the
///   deadline rule, wait for one -> wait out what is left of the takeover delay for the
///   vacancy that made this key first -> look at the view again (either wait took time in
///   which the key could have gone) -> lead, from the revision of the view.
///
/// The view is the election read once and then followed by its watch, contiguously: at any
/// revision at or after the key's entry it says exactly what etcd held then, so the win is
/// decided from it, without a read. Only a view rebuilt by a read after a gap in the watch (a
/// compaction) since the key entered is confirmed by a linearizable read of the key first.
///
/// The takeover delay guards against a head removed without its owner's say (an operator, an
/// expiry, etcd's stale-leader revocation): its owner may still believe it leads for a few
/// watch round trips. A head removed by its owner's signed resignation needs none.
///
/// A view older than the revision the key entered the line at says nothing about the key.
/// A view as new as that without the key (an operator's delete) puts it in line again, at the
/// back. So does a read that does not find it. A lost lease ends the campaign with the reason.
/// Not thread-safe; no I/O.
class CampaignEngine {
 public:
  enum class Do {
    grant,          ///< grant a lease, then granted()
    enter,          ///< put the key in line, then entered() (or failed())
    wait,           ///< look at the view (viewed()), and wait for it to change while it says wait
    confirm,        ///< read the key, then confirmed() (or failed()): after a gap in the watch
    pause,          ///< wait `delay`, then paused(): etcd could not be reached for now
    await_renewal,  ///< wait up to `delay` for a renewal answered in time, then renewed()
    settle,         ///< wait what is left of the takeover delay (`delay`), then settled()
    lead,           ///< won: lead from read_revision()
    fail,           ///< the campaign is over: `error`, `message`
  };

  struct Step {
    Do what;
    std::chrono::milliseconds delay{0};
    boost::system::error_code error{};
    std::string message{};
  };

  /// What the election's view says of this campaign's key.
  struct View {
    bool synced = false;                ///< false until the feed has read the election
    std::int64_t revision = 0;          ///< the view holds every change up to this revision
    std::optional<std::int64_t> first;  ///< the lowest create revision in line (the leader's)
    std::optional<std::int64_t> own;    ///< this key's create revision, if the view has it
    std::int64_t own_lease = 0;         ///< and its lease
    /// No gap in the watch (a compaction) since the key entered the line.
    bool contiguous = true;
    /// How the head last changed hands (ElectionFeed::Vacancy): by its owner's signed
    /// resignation, or otherwise, `since_vacancy` ago.
    bool vacancy_signed = false;
    std::chrono::nanoseconds since_vacancy{0};
  };

  /// What the confirming read found of the key.
  struct Found {
    std::int64_t create_revision;
    std::int64_t lease;
  };

  struct Options {
    std::chrono::milliseconds takeover_delay{0};
    /// How long a win waits for a renewal answered within the deadline rule.
    std::chrono::milliseconds renewal_wait{std::chrono::seconds(5)};
    /// Between reads that could not reach etcd.
    std::chrono::milliseconds read_pause{500};
    /// A try: once the view shows another key first, the campaign fails with errc::lock_held
    /// instead of waiting in line (try_lock()).
    bool only_if_first = false;
  };

  explicit CampaignEngine(Options options) : options_(options) {}

  /// The first step: grant, unless a live lease is kept from before.
  Step start(std::optional<std::int64_t> live_lease) {
    if (!live_lease) return {Do::grant};
    lease_ = *live_lease;
    return {Do::enter};
  }

  Step granted(std::int64_t lease) {
    lease_ = lease;
    return {Do::enter};
  }

  /// The key is in line with create revision `create_revision`, as of etcd revision `revision`.
  Step entered(std::int64_t create_revision, std::int64_t revision) {
    own_revision_ = create_revision;
    entered_at_ = revision;
    delay_served_ = false;  // a new place in line: the vacancy that makes it first is new too
    return {Do::wait};
  }

  /// `in_time`: a renewal has been answered within the deadline rule.
  Step viewed(const View& view, bool in_time) {
    // A view that has not caught up with the key's entry cannot tell anything about it.
    if (!view.synced || view.revision < entered_at_) return {Do::wait};
    if (ELECTION_MUTATED(no_own_key_check)) {
      // etcd's own Campaign: won once no key with a lower create revision is left.
      if (view.first && *view.first < own_revision_) return {Do::wait};
      settle_for_ = remaining_delay(view);
      if (!view.contiguous) return {Do::confirm};
      read_revision_ = view.revision;
      return won(in_time);
    }
    if (!holds_own(view)) {
      // Gone from the line (deleted, or replaced by a key of another create revision or
      // lease): in line again, at the back. The Txn puts it back, or finds the view was behind
      // after all.
      ++reentries_;
      return {Do::enter};
    }
    if (!view.first || *view.first != own_revision_) {
      if (options_.only_if_first && view.first)
        return {Do::fail,
                {},
                errc::lock_held,
                "try_lock: held by another (the key with create revision " +
                    std::to_string(*view.first) + " is first in line)"};
      return {Do::wait};
    }
    settle_for_ = remaining_delay(view);
    if (!view.contiguous) return {Do::confirm};
    read_revision_ = view.revision;
    return won(in_time);
  }

  /// The read found the key as `found` (nothing: std::nullopt) at etcd revision `revision`;
  /// `in_time`: a renewal has been answered within the deadline rule (the lease's local
  /// deadline has not passed). `view` is the election's view now: while the read was in
  /// flight it may have seen the key go at a later revision, and then the read is stale.
  Step confirmed(std::optional<Found> found, std::int64_t revision, bool in_time,
                 const View& view) {
    if (!ELECTION_MUTATED(no_own_key_check) &&
        (!found || found->create_revision != own_revision_ || found->lease != lease_ ||
         (view.synced && view.revision > revision && !holds_own(view)))) {
      ++reentries_;
      return {Do::enter};  // the key went; in line again, at the back
    }
    read_revision_ = revision;
    return won(in_time);
  }

  /// Entering the line, the read, or the view failed with `error`. Transient failures (etcd
  /// away, no raft leader) are waited out while the lease lives, and the step is tried again;
  /// others end the campaign.
  Step failed(Do during, const boost::system::error_code& error, std::string message) {
    if ((during == Do::enter || during == Do::confirm) && is_transient(error)) {
      resume_ = during;
      return {Do::pause, options_.read_pause};
    }
    return {Do::fail, {}, error, std::move(message)};
  }

  /// After a pause: the step that failed, again.
  Step paused() { return {resume_}; }

  /// After await_renewal: whether a renewal within the deadline rule came. The wait took time
  /// in which the key could have gone (an operator's delete, a revocation): the view is looked
  /// at again before the win counts.
  Step renewed(bool in_time) {
    if (!in_time)
      return {Do::fail,
              {},
              errc::lease_deadline_passed,
              "campaign: won, but no renewal of the lease was answered in time"};
    return {Do::wait};
  }

  /// After the takeover delay: the key may have been deleted while it was waited out, so the
  /// view decides again (what is left of the delay is then nothing, and the win is from the
  /// view's newer revision).
  Step settled() {
    // Waited out once for this place in line: the head cannot change hands again while this key
    // is first, so a vacancy the feed reports anew (a re-read that did not see the head change
    // hands counts as one, seen then) asks for no second delay.
    delay_served_ = true;
    return {Do::wait};
  }

  Step lease_lost(const boost::system::error_code& reason) {
    return {Do::fail, {}, reason, "campaign: the lease was lost while waiting in line"};
  }

  std::int64_t lease() const { return lease_; }
  std::int64_t own_revision() const { return own_revision_; }
  std::int64_t read_revision() const { return read_revision_; }
  int reentries() const { return reentries_; }

 private:
  bool holds_own(const View& view) const {
    return view.own && *view.own == own_revision_ && view.own_lease == lease_;
  }

  Step won(bool in_time) {
    if (!in_time) return {Do::await_renewal, options_.renewal_wait};
    return settle_or_lead();
  }

  // What is left of the takeover delay for the vacancy that made this key first.
  std::chrono::milliseconds remaining_delay(const View& view) const {
    if (view.vacancy_signed || delay_served_ || ELECTION_MUTATED(no_takeover_delay))
      return std::chrono::milliseconds(0);
    const auto left = options_.takeover_delay -
                      std::chrono::duration_cast<std::chrono::milliseconds>(view.since_vacancy);
    return std::max(left, std::chrono::milliseconds(0));
  }

  Step settle_or_lead() {
    if (settle_for_.count() > 0) return {Do::settle, settle_for_};
    return {Do::lead};
  }

  Options options_;
  std::int64_t lease_ = 0;
  std::int64_t own_revision_ = 0;
  std::int64_t entered_at_ = 0;
  std::int64_t read_revision_ = 0;
  std::chrono::milliseconds settle_for_{0};
  bool delay_served_ = false;  // the takeover delay waited out for the current place in line
  int reentries_ = 0;
  Do resume_ = Do::confirm;
};

}  // namespace election::detail
