// A lease granted, and its keep-alive started from that moment.
#include "base/throw.hpp"
#include "lease/lease_state.hpp"

namespace election::detail {

namespace asio = boost::asio;

asio::awaitable<std::shared_ptr<LeaseState>> grant_lease(std::shared_ptr<ClientCore> core,
                                                         std::chrono::seconds ttl,
                                                         std::chrono::milliseconds margin) {
  // etcd's upper bound (MaxLeaseTTL); larger values are refused by the server anyway.
  constexpr std::int64_t max_ttl = 9'000'000'000;
  if (ttl.count() <= 0)
    throw_error(errc::invalid_ttl, "lease grant: TTL " + std::to_string(ttl.count()) + " s");
  if (ttl.count() > max_ttl)
    throw_error(errc::ttl_refused, "lease grant: TTL " + std::to_string(ttl.count()) +
                                       " s is over etcd's maximum of 9000000000 s");
  // A margin is checked against the TTL asked for before anything is sent; etcd may raise a
  // TTL (never lower it), so the granted one is at least as long.
  if (margin.count() >= 0 && margin >= ttl)
    throw_error(errc::invalid_argument, "lease grant: margin of " + std::to_string(margin.count()) +
                                            " ms must be shorter than the TTL");
  co_await core->connect();

  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl.count());
  const auto sent = core->time().now();
  auto reply = co_await core->call_retrying("lease grant", core->lease().async(),
                                            &etcdserverpb::Lease::Stub::async::LeaseGrant,
                                            std::move(request));
  const auto rtt = core->time().now() - sent;
  if (!reply.error().empty() || reply.ttl() <= 0)
    throw_error(errc::ttl_refused, "lease grant: " + reply.error());
  core->rtt().sample(rtt);

  const std::chrono::seconds granted(reply.ttl());
  const auto chosen = margin.count() >= 0 ? margin : LeaseClock::default_margin(granted);
  auto state =
      std::make_shared<LeaseState>(core, reply.id(), ttl, LeaseClock(sent, granted, chosen));
  KeepAliveHub::of(core)->add(state, rtt);
  co_return state;
}

}  // namespace election::detail
