// A watch on a key range on a gRPC stream of its own, that survives broken streams: the
// benchmarks' floor (what a watch costs when nothing is shared), built on the library's bridge.
// The library itself runs every watch of a Client on one stream (src/transport/watch_hub.hpp).
#pragma once

#include "base/backoff.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/awaitable.hpp>

#include <vector>

namespace election::detail {

/// Delivers the events on [key, range_end) from a start revision, in order, re-opening the
/// watch after a broken stream (member restart or failover, a member without a raft leader) from
/// the revision after the last event delivered, so nothing is lost or repeated.
/// Not thread-safe; use on the core's executor.
class KeyWatch {
 public:
  using Stream = BidiStream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;

  struct Batch {
    std::vector<mvccpb::Event> events;
    std::int64_t revision = 0;  // the revision of the last event
  };

  KeyWatch(std::shared_ptr<ClientCore> core, std::string key, std::string range_end,
           std::int64_t start_revision);

  /// The next non-empty batch of events. Throws errc::compacted when the revision to resume
  /// from has been compacted (the caller must re-read and start a new watch), and
  /// errc::client_closed, errc::auth_failed, errc::permission_denied. Cancellable: a cancelled
  /// call loses no event.
  boost::asio::awaitable<Batch> next();

 private:
  void open();
  /// Authenticates again once per refusal streak; false when that cannot help.
  boost::asio::awaitable<bool> reauthenticate();

  std::shared_ptr<ClientCore> core_;
  std::string key_;
  std::string range_end_;
  std::int64_t next_revision_;
  Backoff backoff_{std::chrono::milliseconds(50), std::chrono::seconds(2)};
  Stream stream_;
  std::uint64_t opened_with_token_ = 0;  // the token generation the stream was opened with
  bool reauthenticated_ = false;         // since the last watch etcd accepted
  // etcd checks the token once, when the watch is created: a watch re-created after the token
  // expired is cancelled ("invalid auth token") until the client authenticates again.
};

}  // namespace election::detail
