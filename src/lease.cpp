#include "election/lease.hpp"

#include "kv.hpp"
#include "lease_state.hpp"

namespace election {

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
  auto reply = co_await core->call_retrying("lease grant", core->lease().async(),
                                            &etcdserverpb::Lease::Stub::async::LeaseGrant,
                                            std::move(request));
  if (!reply.error().empty() || reply.ttl() <= 0)
    throw_error(errc::ttl_refused, "lease grant: " + reply.error());

  const std::chrono::seconds granted(reply.ttl());
  const auto margin =
      options.margin.count() >= 0 ? options.margin : detail::LeaseClock::default_margin(granted);
  if (margin >= granted)
    throw_error(errc::invalid_argument, "lease grant: margin must be shorter than the TTL");
  auto state = std::make_shared<detail::LeaseState>(core, reply.id(), ttl,
                                                    detail::LeaseClock(sent, granted, margin));
  detail::KeepAliveHub::of(core)->add(state);
  co_return Lease(std::move(state));
}

Lease::Lease(std::shared_ptr<detail::LeaseState> state) : state_(std::move(state)) {}
Lease::Lease(Lease&&) noexcept = default;
Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    stop_keep_alive();
    state_ = std::move(other.state_);
  }
  return *this;
}
Lease::~Lease() { stop_keep_alive(); }

void Lease::stop_keep_alive() {
  if (state_ && state_->core->keep_alive_hub) state_->core->keep_alive_hub->remove(state_->id);
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
  stop_keep_alive();
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
