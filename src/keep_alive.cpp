#include "lease_state.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace election::detail {

namespace asio = boost::asio;

KeepAliveHub::KeepAliveHub(const std::shared_ptr<ClientCore>& core) : wake_(core->executor()) {}

std::shared_ptr<KeepAliveHub> KeepAliveHub::of(const std::shared_ptr<ClientCore>& core) {
  if (!core->keep_alive_hub) core->keep_alive_hub = std::make_shared<KeepAliveHub>(core);
  return core->keep_alive_hub;
}

std::chrono::milliseconds KeepAliveHub::patience(const LeaseClock& c) {
  return std::max<std::chrono::milliseconds>(c.period() / 2, std::chrono::milliseconds(500));
}

// Up to a quarter of a period early, at most 250 ms: at most four wake-ups a second however
// many leases there are, and a renewal still lands well before the deadline.
std::chrono::milliseconds KeepAliveHub::batch_window(const LeaseClock& c) {
  return std::min<std::chrono::milliseconds>(c.period() / 4, std::chrono::milliseconds(250));
}

void KeepAliveHub::add(const std::shared_ptr<LeaseState>& lease) {
  entries_[lease->id] = Entry{lease, std::nullopt};
  if (running_) {
    poke();
    return;
  }
  running_ = true;
  asio::co_spawn(wake_.get_executor(), drive(shared_from_this(), lease->core),
                 [](std::exception_ptr) {});
}

void KeepAliveHub::remove(std::int64_t id) {
  if (entries_.erase(id) && entries_.empty()) poke();  // the loop ends and closes the stream
}

void KeepAliveHub::drop_stream() {
  stream_ = {};  // cancels the call; its reader sees the generation change and stops
  ++generation_;
  for (auto& [id, entry] : entries_) entry.sent.reset();
}

void KeepAliveHub::lose_all(boost::system::error_code reason) {
  auto entries = std::move(entries_);
  entries_.clear();
  for (auto& [id, entry] : entries)
    if (auto lease = entry.lease.lock()) lease->lose(reason);
}

bool KeepAliveHub::send(ClientCore& core, const std::shared_ptr<ClientCore>& owner,
                        std::int64_t id) {
  if (!stream_) {
    stream_ = start_bidi_stream<etcdserverpb::LeaseKeepAliveRequest,
                                etcdserverpb::LeaseKeepAliveResponse>(
        core.tracker(), core.executor(), core.stream_context(),
        [&](auto* ctx, auto* reactor) { core.lease().async()->LeaseKeepAlive(ctx, reactor); });
    ++generation_;
    asio::co_spawn(core.executor(), read(shared_from_this(), owner, generation_),
                   [](std::exception_ptr) {});
  }
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(id);
  return stream_.write(std::move(request));
}

KeepAliveHub::clock::time_point KeepAliveHub::step(ClientCore& core,
                                                   const std::shared_ptr<ClientCore>& owner) {
  const auto now = clock::now();
  auto next = clock::time_point::max();
  bool stuck = false;
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto lease = it->second.lease.lock();
    if (!lease || lease->lost_event.is_set()) {
      it = entries_.erase(it);
      continue;
    }
    if (!lease->clock.expired(now)) {
      next = std::min(next, lease->clock.deadline());
    } else if (!lease->hold_past_deadline) {
      lease->lose(errc::lease_deadline_passed);
      it = entries_.erase(it);
      continue;
    }
    if (it->second.sent) {
      const auto give_up = *it->second.sent + patience(lease->clock);
      if (now >= give_up) stuck = true;
      next = std::min(next, give_up);
    }
    ++it;
  }
  if (stuck) drop_stream();  // the due renewals go out again below, on a new stream
  if (now < retry_at_) return std::min(next, retry_at_);

  for (auto& [id, entry] : entries_) {
    if (entry.sent) continue;
    const auto lease = entry.lease.lock();
    const auto due = lease->clock.next_renewal(lease->clock.last_acknowledged_send());
    if (due > now + batch_window(lease->clock)) {
      next = std::min(next, due - batch_window(lease->clock));
      continue;
    }
    if (!send(core, owner, id)) {
      // The stream ended under us: drop it (its reader sees the new generation and stops)
      // and open another after a backoff.
      drop_stream();
      retry_at_ = now + backoff_.next();
      return std::min(next, retry_at_);
    }
    entry.sent = now;
    next = std::min(next, now + patience(lease->clock));
  }
  return next;
}

asio::awaitable<void> KeepAliveHub::drive(std::shared_ptr<KeepAliveHub> self,
                                          std::shared_ptr<ClientCore> core) {
  for (;;) {
    if (core->tracker()->closed()) {
      self->lose_all(errc::client_closed);
      break;
    }
    const auto next = self->step(*core, core);
    if (self->entries_.empty()) break;
    self->wake_.expires_at(next);
    boost::system::error_code ec;  // operation_aborted: poked to look again
    co_await self->wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  self->drop_stream();
  self->running_ = false;
}

asio::awaitable<void> KeepAliveHub::read(std::shared_ptr<KeepAliveHub> self,
                                         std::shared_ptr<ClientCore> core,
                                         std::uint64_t generation) {
  // The stream is held by the hub; a copy of its queue is all a pending read needs.
  for (;;) {
    if (generation != self->generation_) co_return;
    auto reply = co_await self->stream_.async_read(asio::use_awaitable);
    if (generation != self->generation_) co_return;  // dropped while we waited: not counted
    if (!reply) {
      const auto status = self->stream_.status();
      if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
          status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
        self->lose_all(to_error_code(status, true));
      } else if (core->tracker()->closed()) {
        self->lose_all(errc::client_closed);
      } else {
        self->drop_stream();
        self->retry_at_ = clock::now() + self->backoff_.next();
      }
      self->poke();
      co_return;
    }
    auto it = self->entries_.find(reply->id());
    if (it == self->entries_.end() || !it->second.sent) continue;  // removed meanwhile
    const auto sent = *it->second.sent;
    it->second.sent.reset();
    auto lease = it->second.lease.lock();
    if (!lease) {
      self->entries_.erase(it);
      continue;
    }
    if (reply->ttl() <= 0) {
      lease->lose(errc::lease_expired);
      self->entries_.erase(it);
      continue;
    }
    lease->clock.renewed(sent, std::chrono::seconds(reply->ttl()));
    self->backoff_.reset();
  }
}

}  // namespace election::detail
