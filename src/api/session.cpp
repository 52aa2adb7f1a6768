#include "election/session.hpp"

#include "api/access.hpp"
#include "api/launch.hpp"
#include "api/session_state.hpp"
#include "base/throw.hpp"

#include <boost/asio/dispatch.hpp>

namespace election {

namespace asio = boost::asio;
using boost::system::system_error;

namespace detail {

namespace {

bool aborted(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const system_error& x) {
    return x.code() == asio::error::operation_aborted;
  } catch (...) {
    return false;
  }
}

}  // namespace

asio::awaitable<std::shared_ptr<LeaseState>> SessionState::current() {
  auto self = shared_from_this();  // alive while this runs, whatever the Session does
  for (;;) {
    if (closed)
      throw_error(errc::invalid_argument, "session: the Session was destroyed; its lease revoked");
    if (auto l = live()) co_return l;
    if (auto g = grant_) {
      co_await g->done.wait();
      // A grant cut short by its caller's cancellation is not a failure of this caller's.
      if (g->failure && !aborted(g->failure)) std::rethrow_exception(g->failure);
      continue;
    }
    auto g = std::make_shared<Grant>(core->executor());
    grant_ = g;
    try {
      auto granted = co_await grant_lease(core, options.ttl, options.lease.margin);
      // Held past its deadline for good: only etcd's word ends a session's lease.
      granted->shared = true;
      granted->hold_past_deadline = true;
      if (closed)
        Withdrawal::start(granted);
      else
        lease = std::move(granted);
    } catch (...) {
      g->failure = std::current_exception();
    }
    if (grant_ == g) grant_.reset();
    g->done.set();
    if (g->failure) std::rethrow_exception(g->failure);
  }
}

void SessionState::claim(const std::string& election) {
  if (!elections.insert(election).second)
    throw_error(errc::invalid_argument,
                "participant: this Session already has a participant in election '" + election +
                    "': its key is the election and the session's lease, one per election");
}

void SessionState::close() {
  closed = true;
  if (lease && !lease->lost()) Withdrawal::start(lease);
}

namespace {

asio::awaitable<std::int64_t> start_of(std::shared_ptr<SessionState> s) {
  auto lease = co_await s->current();
  co_return lease->id;
}

}  // namespace

}  // namespace detail

Session::Session(Client& client, SessionOptions options) {
  if (options.ttl.count() <= 0)
    throw_error(errc::invalid_ttl, "session TTL " + std::to_string(options.ttl.count()) + " s");
  state_ = std::make_shared<detail::SessionState>(detail::access::core(client), options);
}

Session::Session(Session&&) noexcept = default;

Session& Session::operator=(Session&& other) noexcept {
  if (this != &other) {
    Session gone(std::move(*this));
    state_ = std::move(other.state_);
  }
  return *this;
}

Session::~Session() { close(); }

void Session::close() {
  if (!state_) return;
  // On the Client's executor: at once from there, posted from another thread.
  auto executor = state_->core->executor();
  asio::dispatch(executor, [s = state_] { s->close(); });
}

asio::awaitable<std::int64_t> Session::start() {
  if (!state_) throw_error(errc::object_gone, "session start: the Session was moved from");
  return detail::run_on(state_->core->executor(), detail::start_of(state_),
                        detail::Cancellation::with_effects);
}

void Session::start_start(std::shared_ptr<detail::SessionState> s, Handler<std::int64_t> handler,
                          diagnostics* diag) {
  if (!s) return detail::refuse_gone(std::move(handler), diag, "session start");
  auto executor = s->core->executor();
  detail::launch(executor, detail::start_of(std::move(s)), std::move(handler), diag,
                 detail::Cancellation::with_effects);
}

const std::shared_ptr<detail::ClientCore>& detail::access::session_core(const Session& session) {
  return session.state_->core;
}

const SessionOptions& detail::access::session_options(const Session& session) {
  return session.state_->options;
}

std::optional<std::int64_t> Session::lease_id() const {
  if (auto l = state_->live()) return l->id;
  return std::nullopt;
}

std::chrono::seconds Session::granted_ttl() const {
  return state_->lease ? state_->lease->clock.ttl() : std::chrono::seconds(0);
}

std::optional<lease_clock::time_point> Session::deadline() const {
  if (auto l = state_->live()) return l->clock.deadline();
  return std::nullopt;
}

}  // namespace election
