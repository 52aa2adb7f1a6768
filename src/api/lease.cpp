#include "election/lease.hpp"
#include "access.hpp"

#include "kv.hpp"
#include "launch.hpp"
#include "lease_state.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace election {

namespace asio = boost::asio;

namespace detail {

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

std::shared_ptr<Withdrawal> Withdrawal::start(std::shared_ptr<LeaseState> lease,
                                              std::optional<Signature> sign) {
  auto& core = lease->core;
  auto self = std::make_shared<Withdrawal>(core->executor());
  // Renewals stop now, whatever happens to the revocation.
  if (core->keep_alive_hub) core->keep_alive_hub->remove(lease->id);
  if (lease->lost() && lease->lost_reason == errc::lease_expired) {
    self->finish({}, {});  // etcd said it is gone: nothing to revoke
    return self;
  }
  lease->lose(errc::lease_revoked);
  // Runs inline up to the first request, which is in flight when this returns.
  auto done = ClientCore::background(core, "lease revocation");
  asio::co_spawn(core->executor(), retry(self, std::move(lease), {}, std::move(sign)),
                 std::move(done));
  return self;
}

std::shared_ptr<Withdrawal> Withdrawal::start_key(std::shared_ptr<LeaseState> lease,
                                                  std::string key, std::optional<Signature> sign) {
  auto self = std::make_shared<Withdrawal>(lease->core->executor());
  if (lease->lost()) {
    self->finish({}, {});  // the lease is gone, and its keys with it
    return self;
  }
  auto executor = lease->core->executor();
  auto done = ClientCore::background(lease->core, "key deletion");
  asio::co_spawn(executor, retry(self, std::move(lease), std::move(key), std::move(sign)),
                 std::move(done));
  return self;
}

void Withdrawal::finish(boost::system::error_code result, std::string message) {
  if (done.is_set()) return;
  result_ = result;
  message_ = std::move(message);
  done.set();
}

namespace {

// The signed resignation: whether it deleted the key. Anything but a passing failure (no
// permission on the signature's key, say) is an unsigned withdrawal's business.
asio::awaitable<bool> resign_signed(ClientCore& core, const Signature& sign, std::int64_t lease) {
  auto request = signed_resignation(sign.election, sign.key, sign.create_revision, lease);
  try {
    auto reply = co_await core.call_retrying(
        "resign", core.kv().async(), &etcdserverpb::KV::Stub::async::Txn, std::move(request), true);
    co_return reply.succeeded();
  } catch (const boost::system::system_error& e) {
    if (e.code() == errc::client_closed || e.code() == asio::error::operation_aborted) throw;
  }
  co_return false;
}

}  // namespace

asio::awaitable<void> Withdrawal::retry(std::shared_ptr<Withdrawal> self,
                                        std::shared_ptr<LeaseState> lease, std::string key,
                                        std::optional<Signature> sign) {
  auto& core = *lease->core;
  const auto now = core.time().now();
  const auto give_up =
      std::max(lease->clock.deadline(), now) + lease->clock.ttl() + std::chrono::seconds(2);
  // A Session's key resigned with a signature leaves the signature on the shared lease: it is
  // deleted next, in place of the key.
  if (sign) {
    bool resigned = false;
    try {
      resigned = co_await resign_signed(core, *sign, lease->id);
    } catch (const boost::system::system_error& e) {
      self->finish(e.code(), e.what());
      co_return;
    }
    if (resigned && !key.empty()) key = resignation_key(sign->election, lease->id);
  }
  asio::steady_timer pause(core.executor());
  Backoff backoff(std::chrono::milliseconds(200), std::chrono::seconds(2));
  for (;;) {
    boost::system::error_code failed;
    std::string message;
    try {
      if (key.empty())
        co_await revoke_lease(core, lease->id, true);
      else
        co_await delete_key(core, key, true);
    } catch (const boost::system::system_error& e) {
      failed = e.code();
      message = e.what();
    }
    if (!failed) break;
    if (!key.empty() && lease->lost()) break;  // the lease went, and its keys with it
    // Only a passing failure is worth another try, and only while the lease could still live.
    if (!is_transient(failed) || core.time().now() >= give_up) {
      self->finish(failed, message);
      co_return;
    }
    pause.expires_after(backoff.next());
    co_await pause.async_wait(asio::use_awaitable);
  }
  self->finish({}, {});
}

}  // namespace detail

namespace detail {
namespace {

// On the lease's state: a wait or a request outlives the handle if it is moved, and one made
// before the handle was destroyed fails with errc::object_gone.
void check_live(const LeaseState& state, const char* what) {
  if (state.abandoned)
    throw_error(errc::object_gone, std::string(what) + ": the Lease was destroyed");
}

asio::awaitable<boost::system::error_code> wait_lost_of(std::shared_ptr<LeaseState> state) {
  check_live(*state, "lease wait_lost");
  co_await state->lost_event.wait();
  co_return state->lost_reason;
}

asio::awaitable<void> revoke_of(std::shared_ptr<LeaseState> state) {
  check_live(*state, "lease revoke");
  if (state->core->keep_alive_hub) state->core->keep_alive_hub->remove(state->id);
  state->lose(errc::lease_revoked);
  co_await revoke_lease(*state->core, state->id);
}

asio::awaitable<LeaseTimeToLive> time_to_live_of(std::shared_ptr<LeaseState> state) {
  check_live(*state, "lease time-to-live");
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

asio::awaitable<Lease> grant_of(std::shared_ptr<ClientCore> core, std::chrono::seconds ttl,
                                std::chrono::milliseconds margin) {
  co_return access::lease(co_await grant_lease(std::move(core), ttl, margin));
}

constexpr auto effects = Cancellation::with_effects;
constexpr auto no_effects = Cancellation::without_effects;

template <class Op, class... Values>
void start(const char* what, Op op, Cancellation c, std::shared_ptr<LeaseState> s,
           asio::any_completion_handler<void(boost::system::error_code, Values...)> handler,
           diagnostics* diag) {
  if (!s) return refuse_gone(std::move(handler), diag, what);
  auto executor = s->core->executor();
  launch(executor, op(std::move(s)), std::move(handler), diag, c);
}

template <class Op>
auto run(const char* what, Op op, Cancellation c, const std::shared_ptr<LeaseState>& s) {
  if (!s) throw_error(errc::object_gone, std::string(what) + ": the Lease is empty or moved from");
  return run_on(s->core->executor(), op(s), c);
}

}  // namespace
}  // namespace detail

asio::awaitable<Lease> Lease::grant(Client& client, std::chrono::seconds ttl,
                                    LeaseOptions options) {
  const auto& core = detail::access::core(client);
  return detail::run_on(core->executor(), detail::grant_of(core, ttl, options.margin),
                        detail::effects);
}

void Lease::start_grant(std::shared_ptr<detail::ClientCore> core, Handler<Lease> handler,
                        diagnostics* diag, std::chrono::seconds ttl, LeaseOptions options) {
  auto executor = core->executor();
  detail::launch(executor, detail::grant_of(std::move(core), ttl, options.margin),
                 std::move(handler), diag, detail::effects);
}

Lease::Lease(std::shared_ptr<detail::LeaseState> state) : state_(std::move(state)) {}
Lease::Lease(Lease&&) noexcept = default;
Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    abandon();
    state_ = std::move(other.state_);
  }
  return *this;
}
Lease::~Lease() { abandon(); }

void Lease::abandon() {
  if (!state_) return;
  // The keep-alive is the executor's: at once when destroyed there, posted from another thread
  // (a Lease delivered through use_future to a thread of its own is destroyed there).
  auto executor = state_->core->executor();
  asio::dispatch(executor, [s = std::move(state_)] {
    s->abandoned = true;
    if (s->core->keep_alive_hub) s->core->keep_alive_hub->remove(s->id);
  });
}

std::int64_t Lease::id() const { return state_->id; }
std::chrono::seconds Lease::ttl() const { return state_->clock.ttl(); }
std::chrono::seconds Lease::requested_ttl() const { return state_->requested; }
bool Lease::lost() const { return state_->lost_event.is_set(); }
boost::system::error_code Lease::lost_reason() const { return state_->lost_reason; }
Lease::clock::time_point Lease::deadline() const { return state_->clock.deadline(); }

asio::awaitable<boost::system::error_code> Lease::wait_lost() {
  return detail::run("lease wait_lost", detail::wait_lost_of, detail::no_effects, state_);
}

void Lease::start_wait_lost(std::shared_ptr<detail::LeaseState> s,
                            Handler<boost::system::error_code> handler, diagnostics* diag) {
  detail::start("lease wait_lost", detail::wait_lost_of, detail::no_effects, std::move(s),
                std::move(handler), diag);
}

asio::awaitable<void> Lease::revoke() {
  return detail::run("lease revoke", detail::revoke_of, detail::effects, state_);
}

void Lease::start_revoke(std::shared_ptr<detail::LeaseState> s, Handler<> handler,
                         diagnostics* diag) {
  detail::start("lease revoke", detail::revoke_of, detail::effects, std::move(s),
                std::move(handler), diag);
}

asio::awaitable<LeaseTimeToLive> Lease::time_to_live() {
  return detail::run("lease time-to-live", detail::time_to_live_of, detail::no_effects, state_);
}

void Lease::start_time_to_live(std::shared_ptr<detail::LeaseState> s,
                               Handler<LeaseTimeToLive> handler, diagnostics* diag) {
  detail::start("lease time-to-live", detail::time_to_live_of, detail::no_effects, std::move(s),
                std::move(handler), diag);
}

}  // namespace election
