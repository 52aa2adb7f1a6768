#include "engine/election_feed.hpp"

#include "transport/kv.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace election::detail {

namespace asio = boost::asio;
using boost::system::error_code;

ElectionFeed::ElectionFeed(std::shared_ptr<ClientCore> core, std::string election)
    : core_(std::move(core)), election_(std::move(election)), prefix_(election_ + "/") {}

ElectionFeed::~ElectionFeed() {
  if (watch_ && core_->watch_hub) core_->watch_hub->cancel(*watch_);
}

std::shared_ptr<ElectionFeed> ElectionFeed::of(const std::shared_ptr<ClientCore>& core,
                                               const std::string& election) {
  auto& feeds = core->election_feeds;
  if (feeds.size() > 64 && feeds.size() % 64 == 0)
    std::erase_if(feeds, [](const auto& f) { return f.second.expired(); });
  auto& slot = feeds[election];
  auto feed = slot.lock();
  if (!feed) {
    feed = std::make_shared<ElectionFeed>(core, election);
    slot = feed;
  }
  return feed;
}

void ElectionFeed::subscribe(FeedListener* listener, bool seeding) {
  if (std::find(listeners_.begin(), listeners_.end(), listener) == listeners_.end())
    listeners_.push_back(listener);
  if (running_ || failure_) return;
  if (!seeding) return start();
  // The listener's own request reads the line: the feed starts from that (seed()).
  running_ = true;
  signatures_ = true;
  synced_ = false;
  ++run_;
  awaiting_seed_ = true;
}

void ElectionFeed::unsubscribe(FeedListener* listener) {
  const auto it = std::find(listeners_.begin(), listeners_.end(), listener);
  if (it == listeners_.end()) return;
  *it = listeners_.back();
  listeners_.pop_back();
  if (dispatching_) gone_.push_back(listener);
  if (listeners_.empty()) stop();
}

void ElectionFeed::resume() {
  if (!failure_ || listeners_.empty()) return;
  failure_.reset();
  start();
}

void ElectionFeed::start() {
  running_ = true;
  signatures_ = true;  // a new run asks for the wider watch again
  ++run_;
  read_again();
}

void ElectionFeed::read_again() {
  synced_ = false;
  stop_sync_ = std::make_shared<asio::cancellation_signal>();
  asio::co_spawn(core_->executor(), sync(shared_from_this(), run_),
                 asio::bind_cancellation_slot(
                     stop_sync_->slot(),
                     [keep = stop_sync_, done = ClientCore::background(core_, "election feed")](
                         std::exception_ptr e) { done(e); }));
}

void ElectionFeed::stop() {
  running_ = false;
  awaiting_seed_ = false;
  synced_ = false;
  ++run_;
  if (watch_) {
    if (core_->watch_hub) core_->watch_hub->cancel(*watch_);
    watch_.reset();
  }
  if (stop_sync_) stop_sync_->emit(asio::cancellation_type::terminal);
}

void ElectionFeed::fail(error_code reason, const std::string& message) {
  stop();
  failure_ = {reason, message};
  dispatch([&](FeedListener* l) { l->on_failed(reason, message); });
}

void ElectionFeed::publish(const LeaderEvent& event) {
  reported_ = event;
  dispatch([&](FeedListener* l) { l->on_leader(event); });
}

void ElectionFeed::viewed() {
  dispatch([](FeedListener* l) { l->on_view(); });
}

template <class F>
void ElectionFeed::dispatch(F&& f) {
  // A listener may leave while others are told: it is skipped from then on.
  const bool outer = !dispatching_;
  dispatching_ = true;
  const std::vector<FeedListener*> now(listeners_);
  for (auto* l : now)
    if (std::find(gone_.begin(), gone_.end(), l) == gone_.end()) f(l);
  if (outer) {
    dispatching_ = false;
    gone_.clear();
  }
}

// Reads every candidate, then watches from the revision after that read. While etcd cannot be
// reached the read is tried again with backoff, for as long as the feed runs.
asio::awaitable<void> ElectionFeed::sync(std::shared_ptr<ElectionFeed> self, std::uint64_t run) {
  auto& core = *self->core_;
  etcdserverpb::RangeResponse reply;
  asio::steady_timer pause(core.executor());
  for (;;) {
    if (run != self->run_) co_return;
    error_code failed;
    std::string message;
    try {
      reply = co_await range(core, self->prefix_, prefix_end(self->prefix_));
    } catch (const boost::system::system_error& e) {
      failed = e.code();
      message = e.what();
    }
    if (run != self->run_) co_return;
    if (!failed) break;
    if (!is_transient(failed)) {
      // Not by cancelling this coroutine: it may not have suspended yet (a closed Client fails
      // the read at once), and Boost 1.81's co_spawn then throws out of the spawning call.
      self->stop_sync_.reset();
      self->fail(failed, "observe " + self->election_ + ": " + message);
      co_return;
    }
    pause.expires_after(self->backoff_.next());
    co_await pause.async_wait(asio::use_awaitable);
  }
  self->backoff_.reset();
  std::vector<LeaderInfo> candidates;
  candidates.reserve(static_cast<std::size_t>(reply.kvs_size()));
  for (const auto& kv : reply.kvs()) candidates.push_back(to_info(kv));
  self->adopt(std::move(candidates), reply.header().revision());
}

void ElectionFeed::seed(const std::vector<mvccpb::KeyValue>& line, std::int64_t revision) {
  if (!awaiting_seed_ || !running_) return;
  awaiting_seed_ = false;
  std::vector<LeaderInfo> candidates;
  candidates.reserve(line.size());
  for (const auto& kv : line) candidates.push_back(to_info(kv));
  adopt(std::move(candidates), revision);
}

void ElectionFeed::unseeded() {
  if (!awaiting_seed_ || !running_) return;
  awaiting_seed_ = false;
  read_again();
}

void ElectionFeed::adopt(std::vector<LeaderInfo> candidates, std::int64_t revision) {
  const auto run = run_;
  const auto* before = tracker_.first();
  const auto head_before =
      before ? std::optional(std::pair(before->key, before->create_revision)) : std::nullopt;
  synced_ = true;
  watch_ = WatchHub::of(core_)->watch(
      prefix_, signatures_ ? resignations_end(election_) : prefix_end(prefix_), revision + 1,
      shared_from_this());
  auto event = tracker_.reset(std::move(candidates), revision);
  // A head this feed did not see change hands: counted as an unsigned vacancy, seen now.
  const auto* after = tracker_.first();
  if (!after || !head_before || std::pair(after->key, after->create_revision) != *head_before)
    vacancy_ = {false, core_->time().now()};
  if (event) publish(*event);
  if (run == run_) viewed();
}

void ElectionFeed::on_events(std::vector<mvccpb::Event> events) {
  if (apply(events)) viewed();
}

bool ElectionFeed::apply(const std::vector<mvccpb::Event>& events) {
  std::vector<LeaderTracker::Change> changes;
  changes.reserve(events.size());
  for (const auto& event : events)
    changes.push_back({event.type() == mvccpb::Event::DELETE, to_info(event.kv())});
  auto applied = tracker_.apply(election_, changes);
  if (applied.stale) {
    // A revision the view already holds, again: etcd's watch is not exact here (see
    // LeaderTracker::apply). Nothing of it is believed; the election is read again.
    if (watch_ && core_->watch_hub) core_->watch_hub->cancel(*watch_);
    watch_.reset();
    gap();
    return false;
  }
  if (applied.head_removed_signed) vacancy_ = {*applied.head_removed_signed, core_->time().now()};
  for (const auto& change : applied.events) publish(change);
  return true;
}

void ElectionFeed::gap() {
  if (!running_) return;
  ++gaps_;
  read_again();
}

void ElectionFeed::on_compacted(std::int64_t) {
  // History is gone: read the election again. The tracker reports only a leader that differs.
  watch_.reset();
  gap();
}

void ElectionFeed::on_interrupted() {
  watch_.reset();
  gap();
}

void ElectionFeed::on_refused(error_code reason, const std::string& message) {
  watch_.reset();
  if (reason == errc::permission_denied && signatures_ && running_) {
    // Allowed the election's prefix only: follow it without the signatures (every vacancy
    // then waits the takeover delay), read again from the start.
    signatures_ = false;
    ++gaps_;
    read_again();
    return;
  }
  fail(reason, "observe " + election_ + ": " + message);
}

}  // namespace election::detail
