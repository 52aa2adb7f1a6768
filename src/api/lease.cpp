#include "election/lease.hpp"
#include "api/access.hpp"

#include "api/launch.hpp"
#include "lease/lease_state.hpp"
#include "transport/kv.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace election {

namespace asio = boost::asio;

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
