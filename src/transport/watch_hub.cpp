#include "transport/watch_hub.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace election::detail {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

// etcd names a refused token in a watch's cancel reason, and a missing permission as
// "permission denied".
bool permission_refused(const std::string& reason) {
  return reason.find("permission denied") != std::string::npos;
}
bool token_refused(const std::string& reason) {
  return ClientCore::token_rejected(grpc::Status(grpc::StatusCode::UNKNOWN, reason));
}

}  // namespace

WatchMessage classify(const etcdserverpb::WatchResponse& message) {
  if (message.created()) return message.canceled() ? WatchMessage::refused : WatchMessage::created;
  if (message.canceled())
    return message.compact_revision() > 0 ? WatchMessage::compacted : WatchMessage::interrupted;
  if (message.watch_id() == -1 && message.events().empty()) return WatchMessage::progress;
  return WatchMessage::events;
}

WatchHub::WatchHub(const std::shared_ptr<ClientCore>& core)
    : wake_(core->executor()), core_(core) {}

std::shared_ptr<WatchHub> WatchHub::of(const std::shared_ptr<ClientCore>& core) {
  if (!core->watch_hub) core->watch_hub = std::make_shared<WatchHub>(core);
  return core->watch_hub;
}

WatchHub::WatchId WatchHub::watch(std::string key, std::string range_end,
                                  std::int64_t start_revision, std::weak_ptr<WatchSink> sink) {
  const auto id = ++last_id_;
  auto& w = watches_[id] =
      Watch{std::move(key), std::move(range_end), start_revision, std::move(sink), 0, {}};
  if (stream_) create(id, w);
  if (auto core = core_.lock()) core->stats().watches.store(watches_.size());
  if (!running_) {
    if (auto core = core_.lock()) {
      running_ = true;
      asio::co_spawn(core->executor(), drive(shared_from_this(), core),
                     ClientCore::background(core, "watch"));
    }
  }
  return id;
}

void WatchHub::cancel(WatchId id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  if (stream_ && it->second.created_on == generation_) {
    if (holds_.held())
      held_cancels_.emplace_back(id, generation_);  // its events are dropped meanwhile
    else
      write_cancel(id);
  }
  watches_.erase(it);
  if (auto core = core_.lock()) core->stats().watches.store(watches_.size());
  if (watches_.empty()) poke();  // the loop ends and closes the stream
}

void WatchHub::write_cancel(WatchId id) {
  etcdserverpb::WatchRequest request;
  request.mutable_cancel_request()->set_watch_id(id);
  stream_.write(std::move(request));
}

std::shared_ptr<void> WatchHub::hold_stream() {
  return holds_.take([weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self) return;
    for (const auto& [id, generation] : std::exchange(self->held_cancels_, {}))
      if (self->stream_ && generation == self->generation_) self->write_cancel(id);
    if (self->watches_.empty()) self->poke();
  });
}

void WatchHub::create(WatchId id, Watch&) {
  queued_.push_back(id);
  send_creates();
}

void WatchHub::send_creates() {
  // etcd creates a watch in a time that grows with its key count (3.4 copies its read buffer
  // for each create): ten thousand at once keep it busy for seconds, so few are in flight at a
  // time, and renewals and other requests are served between them.
  while (stream_ && creating_.size() < max_creating && !queued_.empty()) {
    const auto id = queued_.front();
    queued_.pop_front();
    auto it = watches_.find(id);
    if (it == watches_.end() || it->second.created_on == generation_ || it->second.resuming)
      continue;
    send_create(id, it->second);
  }
}

void WatchHub::send_create(WatchId id, Watch& w) {
  etcdserverpb::WatchRequest request;
  auto* create = request.mutable_create_request();
  create->set_key(w.key);
  create->set_range_end(w.range_end);
  create->set_start_revision(w.next_revision);
  create->set_watch_id(id);
  create->set_fragment(true);
  w.created_on = generation_;
  w.fragments.clear();
  creating_.push_back(id);
  stream_.write(std::move(request));
}

void WatchHub::open(ClientCore& core) {
  opened_with_token_ = core.token_generation();
  stream_ = start_bidi_stream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>(
      core.tracker(), core.executor(), core.stream_context(),
      [&](auto* ctx, auto* reactor) { core.watch().async()->Watch(ctx, reactor); });
  ++generation_;
  ++core.stats().watch_streams;
  heard_on_stream_ = false;
  creating_.clear();
  queued_.clear();
  // The probe: its answer shows the member is alive, and starts the watches of the stream that
  // ended on their way back (resume()). Only watches never sent are created here.
  etcdserverpb::WatchRequest probe;
  probe.mutable_progress_request();
  stream_.write(std::move(probe));
  progress_sent_ = Clock::now();
  for (auto& [id, w] : watches_)
    if (!w.resuming) queued_.push_back(id);
  send_creates();
  asio::co_spawn(core.executor(), read(shared_from_this(), core_.lock(), generation_),
                 ClientCore::background(core_.lock(), "watch stream"));
}

void WatchHub::drop_stream() {
  stream_ = {};  // cancels the call; its reader sees the generation change and stops
  ++generation_;
  progress_sent_.reset();
  creating_.clear();
  queued_.clear();
  for (auto& [id, w] : watches_) {
    // Sent on the stream that ends: resumed or handed back once a new one answers.
    if (w.created_on != 0) w.resuming = true;
    w.created_on = 0;
    w.fragments.clear();
  }
}

std::shared_ptr<WatchSink> WatchHub::forget(WatchId id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return nullptr;
  auto sink = it->second.sink.lock();
  watches_.erase(it);
  if (auto core = core_.lock()) core->stats().watches.store(watches_.size());
  return sink;
}

void WatchHub::interrupt(WatchId id) {
  if (auto s = forget(id)) s->on_interrupted();
}

// One read at the earliest revision a watch would resume from tells whether etcd still has the
// history after it: a read at revision r is refused as compacted exactly when r is older than
// the compaction, so a read at (next revision - 1) succeeds when no event from the next
// revision on is gone, nor is the next revision itself the compaction's (3.4.23 then drops a
// DELETE there). Then every watch resumes; otherwise every one is read again.
asio::awaitable<void> WatchHub::resume(std::shared_ptr<WatchHub> self,
                                       std::shared_ptr<ClientCore> core,
                                       std::uint64_t generation) {
  const Watch* earliest = nullptr;
  for (const auto& [id, w] : self->watches_)
    if (w.resuming && (!earliest || w.next_revision < earliest->next_revision)) earliest = &w;
  if (!earliest) co_return;
  bool exact = earliest->next_revision <= 1;  // nothing before it to compact
  if (!exact) {
    etcdserverpb::RangeRequest probe;
    probe.set_key(earliest->key);
    probe.set_revision(earliest->next_revision - 1);
    probe.set_count_only(true);
    try {
      co_await core->call_retrying("watch", core->kv().async(),
                                   &etcdserverpb::KV::Stub::async::Range, std::move(probe));
      exact = true;
    } catch (const boost::system::system_error&) {
      // Compacted past it, or etcd cannot say: read again, as after a compaction.
    }
  }
  if (generation != self->generation_) co_return;  // that stream ended too: the next one asks
  std::vector<WatchId> ids;
  for (const auto& [id, w] : self->watches_)
    if (w.resuming) ids.push_back(id);
  for (const auto id : ids) {
    auto it = self->watches_.find(id);
    if (it == self->watches_.end()) continue;  // cancelled meanwhile
    if (!exact) {
      self->interrupt(id);  // the sink may watch again (or cancel another) from in there
      continue;
    }
    it->second.resuming = false;
    auto sink = it->second.sink;
    self->create(id, it->second);
    if (auto s = sink.lock()) s->on_resumed();
  }
}

std::chrono::nanoseconds WatchHub::stall_timeout() const {
  // Doubled for every stream in a row that stalled without a word: on a link slower than the
  // estimate (nothing learnt yet) a probe must be given time to come back at all.
  const auto base = rtt_.timeout(min_stall_timeout);
  return std::min<std::chrono::nanoseconds>(base * (1 << std::min(silent_stalls_, 4)),
                                            std::chrono::seconds(16));
}

void WatchHub::refuse_all(boost::system::error_code reason, const std::string& message) {
  auto all = std::move(watches_);
  watches_.clear();
  for (auto& [id, w] : all)
    if (auto sink = w.sink.lock()) sink->on_refused(reason, message);
}

asio::awaitable<void> WatchHub::drive(std::shared_ptr<WatchHub> self,
                                      std::shared_ptr<ClientCore> core) {
  for (;;) {
    if (core->tracker()->closed()) {
      self->drop_stream();
      self->refuse_all(errc::client_closed, "watch: the client was closed");
      break;
    }
    // A hold keeps a stream open, but opens none.
    if (self->watches_.empty() && (!self->holds_.held() || !self->stream_)) break;
    const auto now = Clock::now();
    auto next = now + progress_interval;
    if (!self->stream_) {
      if (now >= self->retry_at_) {
        self->open(*core);
        next = now + self->stall_timeout();
      } else {
        next = self->retry_at_;
      }
    } else if (self->progress_sent_) {
      const auto give_up = *self->progress_sent_ + self->stall_timeout();
      if (now >= give_up) {
        // Nothing at all since the probe: the member is frozen or the path to it is dead.
        // Open the stream again at once; round robin puts it on the next member.
        ++core->stats().watch_stalls;
        core->report(ClientEvent::Kind::watch_stalled, self->stream_.peer());
        if (!self->heard_on_stream_) ++self->silent_stalls_;
        self->drop_stream();
        if (self->watches_.empty()) continue;  // only held: a hold opens no stream
        self->open(*core);
        next = Clock::now() + self->stall_timeout();
      } else {
        next = give_up;
      }
    } else {
      const auto due = self->last_heard_ + progress_interval;
      if (now >= due) {
        etcdserverpb::WatchRequest request;
        request.mutable_progress_request();
        self->stream_.write(std::move(request));
        self->progress_sent_ = now;
        next = now + self->stall_timeout();
      } else {
        next = due;
      }
    }
    self->wake_.expires_at(next);
    boost::system::error_code ec;  // operation_aborted: poked to look again
    co_await self->wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  self->drop_stream();
  self->running_ = false;
  // A watch added while the loop was on its way out starts it again.
  if (!self->watches_.empty() && !core->tracker()->closed()) {
    self->running_ = true;
    asio::co_spawn(core->executor(), drive(self, core), ClientCore::background(core, "watch"));
  }
}

asio::awaitable<void> WatchHub::read(std::shared_ptr<WatchHub> self,
                                     std::shared_ptr<ClientCore> core, std::uint64_t generation) {
  for (;;) {
    if (generation != self->generation_) co_return;
    // The stream may be replaced while this read waits: the read then ends empty.
    auto message = co_await self->stream_.async_read(asio::use_awaitable);
    if (generation != self->generation_) co_return;
    const auto now = Clock::now();
    if (!message) {
      const auto status = self->stream_.status();
      const bool heard = self->heard_on_stream_;
      self->drop_stream();
      const auto code = status.error_code();
      if (code == grpc::StatusCode::UNAUTHENTICATED ||
          code == grpc::StatusCode::PERMISSION_DENIED) {
        if (core->has_credentials() && !self->reauthenticated_) {
          asio::co_spawn(core->executor(), reauthenticate(self, core, self->opened_with_token_),
                         ClientCore::background(core, "watch authentication"));
        } else {
          std::string what = "watch: " + status.error_message();
          self->refuse_all(to_error_code(status, true), what);
        }
      } else if (core->tracker()->closed()) {
        self->refuse_all(errc::client_closed, "watch: the client was closed");
      } else {
        if (heard) self->backoff_.reset();
        self->retry_at_ = now + self->backoff_.next();
      }
      self->poke();
      co_return;
    }
    self->last_heard_ = now;
    const bool first = !self->heard_on_stream_;
    if (first) core->report(ClientEvent::Kind::watch_stream, self->stream_.peer());
    self->heard_on_stream_ = true;
    self->silent_stalls_ = 0;
    const bool progress = classify(*message) == WatchMessage::progress;
    if (self->progress_sent_) {
      if (progress) {
        self->rtt_.sample(now - *self->progress_sent_);
        core->rtt().sample(now - *self->progress_sent_);
      }
      self->progress_sent_.reset();
    }
    if (first)  // etcd answers again: the watches of the last stream resume, or read again
      asio::co_spawn(core->executor(), resume(self, core, generation),
                     ClientCore::background(core, "watch resume"));
    if (!progress) self->handle(*core, *message);
  }
}

asio::awaitable<void> WatchHub::reauthenticate(std::shared_ptr<WatchHub> self,
                                               std::shared_ptr<ClientCore> core,
                                               std::uint64_t seen) {
  if (self->reauthenticating_) co_return;
  self->reauthenticating_ = true;
  self->reauthenticated_ = true;
  try {
    co_await core->refresh_token(seen);
  } catch (const boost::system::system_error& e) {
    // etcd away while the token is renewed: the stream is simply opened again later. Refused
    // credentials end every watch.
    if (!is_transient(e.code())) self->refuse_all(e.code(), e.what());
  }
  self->reauthenticating_ = false;
  self->drop_stream();
  self->retry_at_ = {};
  self->poke();
}

void WatchHub::handle(ClientCore& core, etcdserverpb::WatchResponse& message) {
  const auto kind = classify(message);
  if (kind == WatchMessage::created || kind == WatchMessage::refused) {
    // etcd answers creates in order, and names a refused one -1: the oldest create pending.
    WatchId id = message.watch_id();
    if (!creating_.empty()) {
      if (id == -1) id = creating_.front();
      std::erase(creating_, id);
    }
    send_creates();
    if (kind == WatchMessage::created) {
      backoff_.reset();
      reauthenticated_ = false;
      return;
    }
    auto it = watches_.find(id);
    if (it == watches_.end()) return;
    const auto reason = message.cancel_reason();
    if (token_refused(reason) && core.has_credentials() && !reauthenticated_) {
      // etcd checks the token when a watch is created: a new token, and every watch again.
      asio::co_spawn(core.executor(),
                     reauthenticate(shared_from_this(), core_.lock(), opened_with_token_),
                     ClientCore::background(core_.lock(), "watch authentication"));
      return;
    }
    const auto code = permission_refused(reason) ? error_code(errc::permission_denied)
                      : token_refused(reason)    ? error_code(errc::auth_failed)
                                                 : error_code(errc::invalid_argument);
    const auto key = it->second.key;
    if (auto s = forget(id)) s->on_refused(code, "watch " + key + ": " + reason);
    return;
  }
  auto it = watches_.find(message.watch_id());
  if (it == watches_.end()) return;  // cancelled by us meanwhile
  if (kind == WatchMessage::compacted) {
    if (auto s = forget(it->first)) s->on_compacted(message.compact_revision());
    return;
  }
  if (kind == WatchMessage::interrupted) {
    // Cancelled by the server for another reason (a proxy, a later etcd): etcd has no watcher
    // for it any more. Its sink reads again and watches anew.
    interrupt(it->first);
    return;
  }
  auto& w = it->second;
  for (auto& event : *message.mutable_events()) w.fragments.push_back(std::move(event));
  if (message.fragment() || w.fragments.empty()) return;  // more of this response to come
  auto events = std::move(w.fragments);
  w.fragments.clear();
  // Never backwards, whatever etcd sends (its sink refuses such events and watches anew).
  w.next_revision = std::max(w.next_revision, events.back().kv().mod_revision() + 1);
  auto sink = w.sink;
  if (auto s = sink.lock()) s->on_events(std::move(events));
}

}  // namespace election::detail
