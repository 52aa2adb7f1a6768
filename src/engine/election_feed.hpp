// One election as etcd has it, followed by one watch and shared by everything on a Client that
// follows that election: Observers, campaigns waiting in line, and terms watching their key.
// Private to the library.
#pragma once

#include "base/backoff.hpp"
#include "engine/leader_tracker.hpp"
#include "transport/client_core.hpp"
#include "transport/watch_hub.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace election::detail {

/// Told of every change of an election's view, on the Client's executor. A listener may
/// unsubscribe (itself or another) from inside these.
class FeedListener {
 public:
  virtual ~FeedListener() = default;
  /// A change of leadership (a new leader, a proclaim, no leader), each once, in order.
  virtual void on_leader(const LeaderEvent&) {}
  /// The view moved on (after each batch of events, or a read of the election).
  virtual void on_view() {}
  /// The feed stopped for a reason that needs the user (no permission, refused credentials,
  /// the client closed). resume() starts it again.
  virtual void on_failed(boost::system::error_code, const std::string&) {}
};

/// An election's candidates in line, kept current: a read of every key under `name/`, then a
/// watch from the revision after it (one of the Client's WatchHub). Whenever the watch cannot
/// go on exactly (a compaction, a stream that ended with its history compacted, etcd cancelled
/// it, or it delivered a revision the view already holds: etcd 3.4.23 repeats events) the
/// election is read again, and only a leader that differs from the last one reported is passed
/// on. Transient failures (etcd away, no leader) are retried inside for as long as anyone
/// listens; others stop the feed and are reported to every listener once.
///
/// Runs while it has listeners; the last one leaving stops the watch. Not thread-safe.
class ElectionFeed : public WatchSink, public std::enable_shared_from_this<ElectionFeed> {
 public:
  ElectionFeed(std::shared_ptr<ClientCore> core, std::string election);
  ~ElectionFeed() override;

  /// The feed of `election` on `core`, made on first use.
  static std::shared_ptr<ElectionFeed> of(const std::shared_ptr<ClientCore>& core,
                                          const std::string& election);

  const std::string& election() const { return election_; }

  /// `seeding`: the listener is about to read the line itself (a campaign entering it): the
  /// feed, if not running yet, starts from that read (seed()) instead of one of its own, or
  /// from its own once told the seed will not come (unseeded()).
  void subscribe(FeedListener* listener, bool seeding = false);
  void seed(const std::vector<mvccpb::KeyValue>& line, std::int64_t revision);
  void unseeded();
  void unsubscribe(FeedListener* listener);

  /// Starts again after a failure (a later Observer::next(), a new campaign).
  void resume();

  /// Whether the view holds etcd's state as of revision(): false until the first read.
  bool synced() const { return synced_; }
  /// Every change up to this revision is in the view.
  std::int64_t revision() const { return tracker_.revision(); }
  const LeaderTracker& view() const { return tracker_; }
  /// How the line's head last changed hands. A head removed by a signed resignation (its owner's
  /// own, guarded by its create revision, seen in the same revision as the deletion) needs no
  /// takeover delay: nobody believes it leads. Any other removal (an operator's delete or lease
  /// revoke, a lease expiry, etcd's stale-leader revocation, a resignation by a client that
  /// does not sign, like etcdctl) does, counted from when the feed saw it; so does a head this
  /// feed did not see change (a read of the election, at start or after a compaction).
  struct Vacancy {
    bool signed_by_owner = false;
    TimeSource::time_point seen_at{};
  };
  const Vacancy& vacancy() const { return vacancy_; }
  /// Counts the times the view's watch could not go on as one stream's own delivery: it was
  /// read again (see the class comment), or its watch resumed on a new stream. A view is
  /// contiguous while this stays the same; a win decided on a view that is not is confirmed by
  /// a read (etcd 3.4.23's watch is not exact across a resumption in every case).
  std::uint64_t gaps() const { return gaps_; }

  /// The leadership as last reported (the state a late subscriber starts from).
  const std::optional<LeaderEvent>& reported() const { return reported_; }
  /// Why the feed stopped, while it is stopped.
  const std::optional<std::pair<boost::system::error_code, std::string>>& failure() const {
    return failure_;
  }

  // WatchSink
  void on_events(std::vector<mvccpb::Event> events) override;
  void on_compacted(std::int64_t compact_revision) override;
  void on_refused(boost::system::error_code reason, const std::string& message) override;
  void on_interrupted() override;
  void on_resumed() override { ++gaps_; }

 private:
  void gap();  // the watch cannot go on exactly: read the election again
  void start();
  void read_again();  // the election read, then watched from after the read
  void stop();
  void fail(boost::system::error_code reason, const std::string& message);
  void publish(const LeaderEvent& event);
  void viewed();
  bool apply(const std::vector<mvccpb::Event>& events);  // false: refused, read again
  void adopt(std::vector<LeaderInfo> candidates, std::int64_t revision);
  template <class F>
  void dispatch(F&& f);
  static boost::asio::awaitable<void> sync(std::shared_ptr<ElectionFeed> self, std::uint64_t run);

  std::shared_ptr<ClientCore> core_;
  std::string election_;
  std::string prefix_;
  // Vectors, not hash sets: a feed has a listener or two (a campaign, its term), and 10,000
  // elections on a Session would each pay a hash table's bucket array.
  std::vector<FeedListener*> listeners_;
  bool dispatching_ = false;
  std::vector<FeedListener*> gone_;  // left while others were being told
  LeaderTracker tracker_;
  std::optional<LeaderEvent> reported_;
  bool synced_ = false;
  std::optional<WatchHub::WatchId> watch_;
  /// Whether the watch covers the resignations' signatures too; off for a user allowed only
  /// the election's prefix (the watch of the wider range was refused): every vacancy then
  /// counts as unsigned.
  bool signatures_ = true;
  bool awaiting_seed_ = false;  // running, to start from a listener's read (seed())
  Vacancy vacancy_;
  std::uint64_t gaps_ = 0;
  std::optional<std::pair<boost::system::error_code, std::string>> failure_;
  bool running_ = false;
  std::uint64_t run_ = 0;  // which start() a sync belongs to
  std::shared_ptr<boost::asio::cancellation_signal> stop_sync_;
  Backoff backoff_{std::chrono::milliseconds(100), std::chrono::seconds(2)};
};

/// A KeyValue under an election's prefix as the candidate it is.
inline LeaderInfo to_info(const mvccpb::KeyValue& kv) {
  return {kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.lease()};
}

}  // namespace election::detail
