// What each message on the Watch stream means to WatchHub (transport/watch_hub.hpp), without a
// server: above all, that a watch etcd cancels for a reason other than a compaction is handed
// back to its owner to read again and watch anew, not left without a watcher (issue 33, point 5;
// finding 7 of reviews/safety-96145a3.md). etcd 3.4.23 itself cancels a live watch only for a
// compaction; a proxy in between, or a later etcd, may for other reasons.
#include "transport/watch_hub.hpp"

#include <catch2/catch.hpp>

using election::detail::classify;
using election::detail::WatchMessage;

TEST_CASE("each Watch stream message is told apart", "[watch-hub]") {
  etcdserverpb::WatchResponse progress;
  progress.set_watch_id(-1);
  progress.mutable_header()->set_revision(40);
  CHECK(classify(progress) == WatchMessage::progress);

  etcdserverpb::WatchResponse created;
  created.set_watch_id(3);
  created.set_created(true);
  CHECK(classify(created) == WatchMessage::created);

  etcdserverpb::WatchResponse refused = created;
  refused.set_canceled(true);
  refused.set_cancel_reason("etcdserver: permission denied");
  CHECK(classify(refused) == WatchMessage::refused);

  etcdserverpb::WatchResponse events;
  events.set_watch_id(3);
  auto* event = events.add_events();
  event->mutable_kv()->set_key("e/1");
  event->mutable_kv()->set_mod_revision(41);
  CHECK(classify(events) == WatchMessage::events);

  etcdserverpb::WatchResponse compacted;
  compacted.set_watch_id(3);
  compacted.set_canceled(true);
  compacted.set_compact_revision(35);
  CHECK(classify(compacted) == WatchMessage::compacted);
}

TEST_CASE("a watch cancelled by the server for another reason than a compaction is interrupted",
          "[watch-hub]") {
  etcdserverpb::WatchResponse cancelled;
  cancelled.set_watch_id(3);
  cancelled.set_canceled(true);
  cancelled.set_cancel_reason("watch canceled by a proxy");
  CHECK(classify(cancelled) == WatchMessage::interrupted);
}
