#include "lease/lease_state.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace election::detail {

namespace asio = boost::asio;
using Action = RenewalPlan::Action;

KeepAliveHub::KeepAliveHub(const std::shared_ptr<ClientCore>& core)
    : wake_(core->executor(), core->time()) {}

std::shared_ptr<KeepAliveHub> KeepAliveHub::of(const std::shared_ptr<ClientCore>& core) {
  if (!core->keep_alive_hub) core->keep_alive_hub = std::make_shared<KeepAliveHub>(core);
  return core->keep_alive_hub;
}

void KeepAliveHub::add(const std::shared_ptr<LeaseState>& lease,
                       std::chrono::nanoseconds grant_rtt) {
  leases_[lease->id] = lease;
  plan_.add(lease->id, &lease->clock, &lease->hold_past_deadline);
  if (!plan_.rtt().known()) plan_.on_rtt_sample(grant_rtt);
  if (running_) {
    poke();
    return;
  }
  running_ = true;
  asio::co_spawn(lease->core->executor(), drive(shared_from_this(), lease->core),
                 ClientCore::background(lease->core, "keep-alive"));
}

void KeepAliveHub::count(ClientCore& core) const {
  auto& stats = core.stats();
  const auto& c = plan_.counters();
  stats.renewals_sent.store(c.sent, std::memory_order_relaxed);
  stats.renewals_answered.store(c.answered, std::memory_order_relaxed);
  stats.renewals_late.store(c.late, std::memory_order_relaxed);
  stats.keep_alive_hedges.store(c.hedges, std::memory_order_relaxed);
  stats.leases.store(leases_.size(), std::memory_order_relaxed);
}

void KeepAliveHub::remove(std::int64_t id) {
  plan_.remove(id);
  // The loop ends and closes the streams, unless a hold keeps them (hold_stream()).
  if (leases_.erase(id) && leases_.empty()) poke();
}

std::shared_ptr<void> KeepAliveHub::hold_stream() {
  return holds_.take([weak = weak_from_this()] {
    if (auto self = weak.lock(); self && self->plan_.empty()) self->poke();
  });
}

void KeepAliveHub::lose(std::int64_t id, boost::system::error_code reason) {
  plan_.remove(id);
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  auto lease = std::move(it->second);
  leases_.erase(it);
  lease->lose(reason);
}

void KeepAliveHub::lose_all(boost::system::error_code reason) {
  for (const auto id : plan_.drain()) lose(id, reason);
  auto rest = std::move(leases_);
  leases_.clear();
  for (auto& [id, lease] : rest) lease->lose(reason);
}

void KeepAliveHub::apply(const Action& action, const std::shared_ptr<ClientCore>& core) {
  switch (action.kind) {
    case Action::Kind::open_stream: {
      opened_with_token_ = core->token_generation();
      streams_[action.stream] = start_bidi_stream<etcdserverpb::LeaseKeepAliveRequest,
                                                  etcdserverpb::LeaseKeepAliveResponse>(
          core->tracker(), core->executor(), core->stream_context(),
          [&](auto* ctx, auto* reactor) { core->lease().async()->LeaseKeepAlive(ctx, reactor); });
      ++core->stats().keep_alive_streams;
      asio::co_spawn(core->executor(), read(shared_from_this(), core, action.stream),
                     ClientCore::background(core, "keep-alive stream"));
      break;
    }
    case Action::Kind::send: {
      auto it = streams_.find(action.stream);
      etcdserverpb::LeaseKeepAliveRequest request;
      request.set_id(action.lease);
      if (it == streams_.end() || !it->second.write(std::move(request))) {
        // The stream ended under us: its reader sees it gone; the plan opens another.
        if (it != streams_.end()) streams_.erase(it);
        plan_.on_stream_broken(action.stream, core->time().now());
        poke();
      }
      break;
    }
    case Action::Kind::close_stream:
      streams_.erase(action.stream);  // cancels the call; its reader stops
      peers_.erase(action.stream);
      break;
    case Action::Kind::deadline:
      if (auto it = leases_.find(action.lease); it != leases_.end()) it->second->deadline_passed();
      break;
    case Action::Kind::lose:
      lose(action.lease, action.reason);
      break;
  }
}

asio::awaitable<void> KeepAliveHub::drive(std::shared_ptr<KeepAliveHub> self,
                                          std::shared_ptr<ClientCore> core) {
  for (;;) {
    if (core->tracker()->closed()) {
      self->lose_all(errc::client_closed);
      break;
    }
    const auto hedges = self->plan_.counters().hedges;
    const auto stuck = self->plan_.primary();
    for (const auto& action : self->plan_.step(core->time().now())) self->apply(action, core);
    self->count(*core);
    if (self->plan_.counters().hedges != hedges && stuck) {
      auto peer = self->peers_.find(*stuck);
      core->report(ClientEvent::Kind::keep_alive_hedged,
                   peer == self->peers_.end() ? std::string() : peer->second);
    }
    if (self->plan_.empty() && !self->holds_.held()) break;
    self->wake_.expires_at(self->plan_.next_wake());
    boost::system::error_code ec;  // operation_aborted: poked to look again
    co_await self->wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  self->streams_.clear();
  self->peers_.clear();
  self->running_ = false;
}

asio::awaitable<void> KeepAliveHub::read(std::shared_ptr<KeepAliveHub> self,
                                         std::shared_ptr<ClientCore> core,
                                         RenewalPlan::StreamId stream) {
  for (;;) {
    auto it = self->streams_.find(stream);
    if (it == self->streams_.end()) co_return;
    // The Stream may be closed (erased) while this read waits: the read then ends empty.
    auto reply = co_await it->second.async_read(asio::use_awaitable);
    it = self->streams_.find(stream);
    if (it == self->streams_.end()) co_return;  // closed by the plan: nothing owed on it helps
    const auto now = core->time().now();
    if (!reply) {
      const auto status = it->second.status();
      self->streams_.erase(it);
      self->peers_.erase(stream);
      self->plan_.on_stream_broken(stream, now);
      const auto code = status.error_code();
      if (code == grpc::StatusCode::UNAUTHENTICATED ||
          code == grpc::StatusCode::PERMISSION_DENIED) {
        if (core->has_credentials() && !self->reauthenticated_) {
          asio::co_spawn(core->executor(), reauthenticate(self, core, self->opened_with_token_),
                         ClientCore::background(core, "keep-alive authentication"));
        } else {
          self->lose_all(to_error_code(status, true));
        }
      } else if (core->tracker()->closed()) {
        self->lose_all(errc::client_closed);
      }
      self->poke();
      co_return;
    }
    self->reauthenticated_ = false;
    if (!self->peers_.count(stream)) {
      auto& peer = self->peers_[stream] = it->second.peer();
      core->report(ClientEvent::Kind::keep_alive_stream, peer);
    }
    const auto before = self->plan_.counters().answered;
    auto lost = self->plan_.on_reply(stream, reply->id(), std::chrono::seconds(reply->ttl()), now);
    if (self->plan_.counters().answered != before) {
      core->rtt().sample(self->plan_.last_rtt());
      core->stats().observe_renewal(self->plan_.last_rtt());
      self->count(*core);
      auto lease = self->leases_.find(reply->id());
      if (lease != self->leases_.end() && !lost) {
        auto& state = *lease->second;
        state.answered_send = state.clock.last_acknowledged_send().time_since_epoch().count();
        state.renewed.notify();
      }
    }
    if (lost) self->apply(*lost, core);
  }
}

// A stream refused for its token: one new token, then the plan opens a stream with it. A second
// refusal before any answer is final (lose_all above).
asio::awaitable<void> KeepAliveHub::reauthenticate(std::shared_ptr<KeepAliveHub> self,
                                                   std::shared_ptr<ClientCore> core,
                                                   std::uint64_t seen) {
  if (self->reauthenticating_) co_return;
  self->reauthenticating_ = true;
  self->reauthenticated_ = true;
  try {
    co_await core->refresh_token(seen);
  } catch (const boost::system::system_error& e) {
    if (!is_transient(e.code())) self->lose_all(e.code());
  }
  self->reauthenticating_ = false;
  self->poke();
}

}  // namespace election::detail
