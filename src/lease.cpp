#include "election/lease.hpp"

#include "client_core.hpp"
#include "election/detail/async_event.hpp"
#include "election/detail/backoff.hpp"
#include "election/detail/lease_clock.hpp"
#include "election/detail/race.hpp"
#include "kv.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <optional>

namespace election {
namespace detail {

namespace asio = boost::asio;
using KeepAliveStream =
    BidiStream<etcdserverpb::LeaseKeepAliveRequest, etcdserverpb::LeaseKeepAliveResponse>;

/// A lease's shared state: the Lease handle and its keep-alive coroutine each hold it.
class LeaseState {
 public:
  LeaseState(std::shared_ptr<ClientCore> core, std::int64_t id, std::chrono::seconds requested,
             LeaseClock clock)
      : core(std::move(core)),
        id(id),
        requested(requested),
        clock(clock),
        lost_event(this->core->executor()) {}

  void lose(boost::system::error_code reason) {
    if (lost_event.is_set()) return;
    lost_reason = reason;
    lost_event.set();
  }

  void stop_keep_alive() { stop.emit(asio::cancellation_type::terminal); }

  std::shared_ptr<ClientCore> core;
  const std::int64_t id;
  const std::chrono::seconds requested;
  LeaseClock clock;
  AsyncEvent lost_event;
  boost::system::error_code lost_reason;
  asio::cancellation_signal stop;
};

namespace {

KeepAliveStream open_keep_alive(ClientCore& core) {
  return start_bidi_stream<etcdserverpb::LeaseKeepAliveRequest,
                           etcdserverpb::LeaseKeepAliveResponse>(
      core.tracker(), core.executor(), core.stream_context(),
      [&](auto* ctx, auto* reactor) { core.lease().async()->LeaseKeepAlive(ctx, reactor); });
}

// Renews every third of the TTL. A reply that has not come within half of that means the
// stream is stuck (a frozen member, a dead connection not yet noticed): it is dropped and a new
// one opened, which round-robin places on another member. The lease is declared lost the
// moment its local deadline passes, whatever the stream is doing.
asio::awaitable<void> keep_alive(std::shared_ptr<LeaseState> s) {
  using clock = LeaseClock::clock;
  auto& core = *s->core;
  asio::steady_timer timer(core.executor());
  Backoff backoff(std::chrono::milliseconds(50),
                  std::max(s->clock.period() / 2, std::chrono::milliseconds(100)));
  KeepAliveStream stream;
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(s->id);
  auto next_send = s->clock.next_renewal(s->clock.last_acknowledged_send());

  for (;;) {
    timer.expires_at(std::min(next_send, s->clock.deadline()));
    co_await timer.async_wait(asio::use_awaitable);
    if (core.tracker()->closed()) {
      s->lose(errc::client_closed);
      co_return;
    }
    if (s->clock.expired(clock::now())) {
      s->lose(errc::lease_deadline_passed);
      co_return;
    }
    if (!stream) stream = open_keep_alive(core);
    const auto sent = clock::now();
    if (!stream.write(request)) {
      stream = {};
      next_send = clock::now() + backoff.next();
      continue;
    }
    // Half a period (at least 500 ms) without a reply counts as stuck, so that a frozen member,
    // or a follower still forwarding to a frozen raft leader, costs at most that much before
    // the renewal is tried again on a new stream.
    const auto patience =
        std::max<std::chrono::milliseconds>(s->clock.period() / 2, std::chrono::milliseconds(500));
    timer.expires_at(std::min(sent + patience, s->clock.deadline()));
    auto result = co_await first_of(stream.async_read(asio::use_awaitable),
                                    timer.async_wait(asio::use_awaitable));
    if (result.index() == 1) {
      stream = {};  // stuck; a late reply on it must not count, so it goes with the stream
      next_send = clock::now();
      continue;
    }
    const auto& reply = std::get<0>(result);
    if (!reply) {
      const auto status = stream.status();
      stream = {};
      if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
          status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
        s->lose(to_error_code(status, true));
        co_return;
      }
      next_send = clock::now() + backoff.next();
      continue;
    }
    if (reply->ttl() <= 0) {
      s->lose(errc::lease_expired);
      co_return;
    }
    s->clock.renewed(sent, std::chrono::seconds(reply->ttl()));
    backoff.reset();
    next_send = s->clock.next_renewal(sent);
  }
}

}  // namespace
}  // namespace detail

namespace asio = boost::asio;

asio::awaitable<Lease> Lease::grant(Client& client, std::chrono::seconds ttl,
                                    LeaseOptions options) {
  // etcd's upper bound (MaxLeaseTTL); larger values are refused by the server anyway.
  constexpr std::int64_t max_ttl = 9'000'000'000;
  if (ttl.count() <= 0)
    throw_error(errc::invalid_ttl, "lease grant: TTL " + std::to_string(ttl.count()) + " s");
  if (ttl.count() > max_ttl)
    throw_error(errc::ttl_refused, "lease grant: TTL " + std::to_string(ttl.count()) +
                                       " s is over etcd's maximum of 9000000000 s");
  auto core = client.core();
  co_await core->connect();

  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl.count());
  const auto sent = clock::now();
  auto reply =
      co_await core->call("lease grant", core->lease().async(),
                          &etcdserverpb::Lease::Stub::async::LeaseGrant, std::move(request));
  if (!reply.error().empty() || reply.ttl() <= 0)
    throw_error(errc::ttl_refused, "lease grant: " + reply.error());

  const std::chrono::seconds granted(reply.ttl());
  const auto margin =
      options.margin.count() >= 0 ? options.margin : detail::LeaseClock::default_margin(granted);
  if (margin >= granted)
    throw_error(errc::invalid_argument, "lease grant: margin must be shorter than the TTL");
  auto state = std::make_shared<detail::LeaseState>(core, reply.id(), ttl,
                                                    detail::LeaseClock(sent, granted, margin));
  asio::co_spawn(core->executor(), detail::keep_alive(state),
                 asio::bind_cancellation_slot(state->stop.slot(), [](std::exception_ptr) {
                   // Ends by cancellation (Lease destroyed or revoked) or after lose().
                 }));
  co_return Lease(std::move(state));
}

Lease::Lease(std::shared_ptr<detail::LeaseState> state) : state_(std::move(state)) {}
Lease::Lease(Lease&&) noexcept = default;
Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    if (state_) state_->stop_keep_alive();
    state_ = std::move(other.state_);
  }
  return *this;
}
Lease::~Lease() {
  if (state_) state_->stop_keep_alive();
}

std::int64_t Lease::id() const { return state_->id; }
std::chrono::seconds Lease::ttl() const { return state_->clock.ttl(); }
std::chrono::seconds Lease::requested_ttl() const { return state_->requested; }
bool Lease::lost() const { return state_->lost_event.is_set(); }
boost::system::error_code Lease::lost_reason() const { return state_->lost_reason; }
Lease::clock::time_point Lease::deadline() const { return state_->clock.deadline(); }

asio::awaitable<boost::system::error_code> Lease::wait_lost() {
  auto state = state_;  // the handle may be moved from while we wait
  co_await state->lost_event.wait();
  co_return state->lost_reason;
}

asio::awaitable<void> Lease::revoke() {
  auto state = state_;
  state->stop_keep_alive();
  state->lose(errc::lease_revoked);
  co_await detail::revoke_lease(*state->core, state->id);
}

asio::awaitable<LeaseTimeToLive> Lease::time_to_live() {
  auto state = state_;
  etcdserverpb::LeaseTimeToLiveRequest request;
  request.set_id(state->id);
  request.set_keys(true);
  auto reply = co_await state->core->call("lease time-to-live", state->core->lease().async(),
                                          &etcdserverpb::Lease::Stub::async::LeaseTimeToLive,
                                          std::move(request));
  LeaseTimeToLive out{
      std::chrono::seconds(reply.ttl()), std::chrono::seconds(reply.grantedttl()), {}};
  for (const auto& key : reply.keys()) out.keys.push_back(key);
  co_return out;
}

}  // namespace election
