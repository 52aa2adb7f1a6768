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
  /// The next events of the watched range, in etcd's order, none missed or repeated.
  virtual void on_events(std::vector<mvccpb::Event> events) = 0;
  /// The revision to resume from was compacted away: the watch is over; read the range again
  /// and watch anew from the read's revision + 1.
  virtual void on_compacted(std::int64_t compact_revision) = 0;
  /// etcd refused the watch for a reason a retry cannot cure (no permission on the range,
  /// credentials refused): the watch is over.
  virtual void on_refused(boost::system::error_code reason, const std::string& message) = 0;
};

/// Runs every watch of one Client on a single Watch stream, as etcd's Go client does: a watch
/// costs a line in a table, not a gRPC stream, so thousands of elections are cheap to follow.
///
/// - Each watch has an id of ours (etcd 3.4+ takes the client's watch_id) and resumes from the
///   revision after the last event it delivered whenever the stream is opened again (a broken
///   stream, a member restart or failover, a member without a raft leader: `hasleader`).
/// - Large responses come in fragments (`fragment`), so values up to etcd's request limit work
///   however many of them a catch-up batch holds; the channel takes messages of any size.
/// - A stalled stream is replaced: once a second a progress request goes out, and when nothing
///   at all has arrived within the round-trip timeout of the progress answers seen (at least
///   500 ms) of it, the member is
///   taken for frozen or cut off and the stream is opened again (gRPC's round robin moves it to
///   another member); without this, only HTTP/2 keep-alive would notice, seconds later.
/// - A refused token is renewed once and every watch created again on a new stream.
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
