// Every watch of one Client on one Watch stream, kept alive across broken and stalled streams.
// Private to the library: it names gRPC and generated protobuf types.
#pragma once

#include "base/backoff.hpp"
#include "base/hold_count.hpp"
#include "base/rtt.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace election::detail {

/// What a watch's owner hears, on the Client's executor. A sink may cancel its own watch or
/// start another from inside any of these.
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  /// The next events of the watched range, as etcd sent them on the watch's one stream. etcd
  /// 3.4.23 can repeat events (#15275) or go back in time (#15271): the sink checks that the
  /// revisions go forward.
  virtual void on_events(std::vector<mvccpb::Event> events) = 0;
  /// The revision to resume from was compacted away: the watch is over; read the range again
  /// and watch anew from the read's revision + 1.
  virtual void on_compacted(std::int64_t compact_revision) = 0;
  /// The watch cannot go on exactly where it was: its stream ended and etcd has compacted its
  /// history past where the watch would resume (or could not be asked), or etcd cancelled it
  /// for a reason other than a compaction. It is over: read the range again and watch anew, as
  /// after a compaction. (Resuming behind a compaction is where etcd 3.4.23 fails: it drops the
  /// DELETE at the revision a watch resumes from when that revision was compacted, #18089 and
  /// #19179, and skips the compaction notice of a watcher whose stream's channel is full,
  /// #17555, as hundreds of watches resumed at once behind a compaction make it.)
  virtual void on_interrupted() = 0;
  /// The watch's stream ended and it goes on, on a new one, from the revision after the last
  /// event it delivered; nothing was compacted past that when the new stream answered. Exact as
  /// far as etcd can tell, but no longer one stream's own continuous delivery: whoever acts on
  /// the view without a read (a win) should count it as a gap.
  virtual void on_resumed() {}
  /// etcd refused the watch for a reason a retry cannot cure (no permission on the range,
  /// credentials refused): the watch is over.
  virtual void on_refused(boost::system::error_code reason, const std::string& message) = 0;
};

/// What one message on the Watch stream is (the decisions of WatchHub without I/O):
enum class WatchMessage {
  progress,     ///< the answer to a progress request (or a progress notification)
  created,      ///< a create was accepted
  refused,      ///< a create was refused (permission, token, ...): `cancel_reason` says why
  compacted,    ///< the watch was cancelled: its next revision was compacted away
  interrupted,  ///< the watch was cancelled for another reason: read again, watch anew
  events,       ///< events (or a fragment of them) of a live watch
};
WatchMessage classify(const etcdserverpb::WatchResponse& message);

/// Runs every watch of one Client on a single Watch stream, as etcd's Go client does: a watch
/// costs a line in a table, not a gRPC stream, so thousands of elections are cheap to follow.
///
/// - Each watch has an id of ours (etcd 3.4+ takes the client's watch_id). When its stream ends
///   (a member restart or failover, a member without a raft leader: `hasleader`) the stream is
///   opened again; once it answers, one read asks etcd whether its history was compacted past
///   the earliest revision a watch would resume from. If not, every watch resumes where it was
///   (on_resumed); if so (or etcd cannot say), every one is handed back to its sink
///   (on_interrupted), which reads its range again and watches anew. Until then the sinks wait
///   without sending anything, however many there are.
/// - Large responses come in fragments (`fragment`), so values up to etcd's request limit work
///   however many of them a catch-up batch holds; the channel takes messages of any size.
/// - A stalled stream is replaced: once a second a progress request goes out, and when nothing
///   at all has arrived within the round-trip timeout of the progress answers seen (at least
///   500 ms) of it, the member is
///   taken for frozen or cut off and the stream is opened again (gRPC's round robin moves it to
///   another member); without this, only HTTP/2 keep-alive would notice, seconds later.
/// - A refused token is renewed once and the stream opened again with it.
///
/// Not thread-safe; runs on the Client's executor while it has watches.
class WatchHub : public std::enable_shared_from_this<WatchHub> {
 public:
  using WatchId = std::int64_t;

  static constexpr std::chrono::milliseconds progress_interval{1000};
  static constexpr std::chrono::milliseconds min_stall_timeout{500};
  /// Creates sent on a stream and not yet answered, at most.
  static constexpr std::size_t max_creating = 64;

  explicit WatchHub(const std::shared_ptr<ClientCore>& core);

  /// The hub of `core`, made on first use.
  static std::shared_ptr<WatchHub> of(const std::shared_ptr<ClientCore>& core);

  /// Starts watching [key, range_end) from `start_revision`; events go to `sink` until
  /// cancel(), on_compacted or on_refused.
  WatchId watch(std::string key, std::string range_end, std::int64_t start_revision,
                std::weak_ptr<WatchSink> sink);

  void cancel(WatchId id);

  /// Leaves an open stream alone while the returned pointer lives: it stays open with nothing
  /// left to watch, and the cancels of watches ended meanwhile are sent (their events dropped
  /// until then) once the last hold goes. See Withdrawal::start: a resignation's request
  /// leaves without the stream's work behind it.
  std::shared_ptr<void> hold_stream();

  std::size_t size() const { return watches_.size(); }

 private:
  using Stream = BidiStream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;

  struct Watch {
    std::string key;
    std::string range_end;
    std::int64_t next_revision;
    std::weak_ptr<WatchSink> sink;
    std::uint64_t created_on = 0;          // the stream generation it was created on, 0: none
    std::vector<mvccpb::Event> fragments;  // a response still arriving in pieces
    bool resuming = false;  // its stream ended: resumed or handed back once a new one answers
  };

  static boost::asio::awaitable<void> drive(std::shared_ptr<WatchHub> self,
                                            std::shared_ptr<ClientCore> core);
  static boost::asio::awaitable<void> read(std::shared_ptr<WatchHub> self,
                                           std::shared_ptr<ClientCore> core,
                                           std::uint64_t generation);
  static boost::asio::awaitable<void> reauthenticate(std::shared_ptr<WatchHub> self,
                                                     std::shared_ptr<ClientCore> core,
                                                     std::uint64_t seen);

  void open(ClientCore& core);
  void drop_stream();
  void create(WatchId id, Watch& w);  // queued, sent by send_creates()
  void send_creates();
  void send_create(WatchId id, Watch& w);
  void write_cancel(WatchId id);
  void handle(ClientCore& core, etcdserverpb::WatchResponse& message);
  // Out of the table (the count in the Client's stats with it); its sink, if it still lives.
  std::shared_ptr<WatchSink> forget(WatchId id);
  void interrupt(WatchId id);
  // The watches whose stream ended, once a new one answers: resumed, or handed back.
  static boost::asio::awaitable<void> resume(std::shared_ptr<WatchHub> self,
                                             std::shared_ptr<ClientCore> core,
                                             std::uint64_t generation);
  void refuse_all(boost::system::error_code reason, const std::string& message);
  std::chrono::nanoseconds stall_timeout() const;
  void poke() { wake_.cancel(); }

  boost::asio::steady_timer wake_;
  std::weak_ptr<ClientCore> core_;
  HoldCount holds_;
  std::vector<std::pair<WatchId, std::uint64_t>> held_cancels_;  // with the stream's generation
  std::map<WatchId, Watch> watches_;
  std::deque<WatchId> creating_;  // creates sent on this stream, not yet answered, in order
  std::deque<WatchId> queued_;    // creates waiting for room among those
  WatchId last_id_ = 0;
  Stream stream_;
  std::uint64_t generation_ = 0;  // which stream a reader belongs to
  bool running_ = false;
  std::chrono::steady_clock::time_point retry_at_{};
  std::chrono::steady_clock::time_point last_heard_{};
  std::optional<std::chrono::steady_clock::time_point> progress_sent_;
  bool heard_on_stream_ = false;  // anything at all on the current stream
  int silent_stalls_ = 0;         // streams in a row given up on before a word came
  std::uint64_t opened_with_token_ = 0;
  bool reauthenticated_ = false;  // since etcd last accepted a watch
  bool reauthenticating_ = false;
  Backoff backoff_{std::chrono::milliseconds(50), std::chrono::seconds(2)};
  // From progress answers only: a member answers those itself, so renewals that waited for a
  // raft election (seconds, in the Client's estimate) do not stretch the stall timeout.
  RttEstimator rtt_;
};

}  // namespace election::detail
