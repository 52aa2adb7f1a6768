// election::Participant: the public object over ParticipantState (api/participant_state.hpp),
// and its reads of the election's line.
#include "api/access.hpp"
#include "api/launch.hpp"
#include "api/participant_state.hpp"
#include "transport/kv.hpp"

#include <boost/asio/dispatch.hpp>

namespace election {

namespace asio = boost::asio;
using boost::system::error_code;
using boost::system::system_error;

namespace detail {

// The election's line in create-revision order (etcd's: the first leads), at most `limit`
// candidates (0: all), from one linearizable read; what etcd's Election.Leader reads too.
asio::awaitable<etcdserverpb::RangeResponse> read_line(ParticipantState& s, const char* what,
                                                       std::int64_t limit) {
  etcdserverpb::RangeRequest request;
  const auto prefix = s.election + "/";
  request.set_key(prefix);
  request.set_range_end(prefix_end(prefix));
  request.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  request.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  request.set_limit(limit);
  co_return co_await s.core->call_retrying(
      what, s.core->kv().async(), &etcdserverpb::KV::Stub::async::Range, std::move(request));
}

asio::awaitable<std::optional<LeaderInfo>> leader_of(std::shared_ptr<ParticipantState> s) {
  s->check_live("leader");
  auto reply = co_await read_line(*s, "leader", 1);
  if (reply.kvs_size() == 0) co_return std::nullopt;
  co_return detail::to_info(reply.kvs(0));
}

asio::awaitable<std::vector<LeaderInfo>> candidates_of(std::shared_ptr<ParticipantState> s) {
  s->check_live("candidates");
  auto reply = co_await read_line(*s, "candidates", 0);
  std::vector<LeaderInfo> line;
  line.reserve(static_cast<std::size_t>(reply.kvs_size()));
  for (const auto& kv : reply.kvs()) line.push_back(to_info(kv));
  co_return line;
}

}  // namespace detail

namespace {

// What both constructors refuse before anything is claimed or sent (the TTL is the Client
// constructor's: a Session's participants use the Session's).
void check_arguments(const std::string& election, const std::string& value,
                     const ParticipantOptions& options) {
  detail::check_election_name(election);
  detail::check_value_size(value, "participant value");
  if (options.takeover_delay && options.takeover_delay->count() < 0)
    throw_error(errc::invalid_argument, "participant takeover delay " +
                                            std::to_string(options.takeover_delay->count()) +
                                            " ms is negative");
}

}  // namespace

Participant::Participant(Client& client, std::string election, std::string value,
                         ParticipantOptions options) {
  check_arguments(election, value, options);
  if (options.ttl.count() <= 0)
    throw_error(errc::invalid_ttl, "participant TTL " + std::to_string(options.ttl.count()) + " s");
  const auto& core = detail::access::core(client);
  core->claim_election(election);
  state_ = std::make_shared<detail::ParticipantState>(core, std::move(election), std::move(value),
                                                      options, nullptr);
}

Participant::Participant(Session& session, std::string election, std::string value,
                         ParticipantOptions options) {
  check_arguments(election, value, options);
  const auto& shared = detail::access::session(session);
  // The session's TTL stands for this participant's: Leadership and granted_ttl() read it.
  options.ttl = shared->options.ttl;
  options.lease = shared->options.lease;
  shared->claim(election);
  try {
    shared->core->claim_election(election);
  } catch (...) {
    shared->release(election);
    throw;
  }
  state_ = std::make_shared<detail::ParticipantState>(shared->core, std::move(election),
                                                      std::move(value), options, shared);
}

Participant::Participant(Participant&&) noexcept = default;

Participant& Participant::operator=(Participant&& other) noexcept {
  if (this != &other) {
    Participant gone(std::move(*this));
    state_ = std::move(other.state_);
  }
  return *this;
}

Participant::~Participant() {
  if (!state_) return;
  // On the Client's executor: at once when destroyed there, posted when destroyed on another
  // thread (its state is the executor's to touch).
  auto executor = state_->core->executor();
  asio::dispatch(executor, [s = std::move(state_)] { s->end(); });
}

const std::string& Participant::election() const { return state_->election; }
const std::string& Participant::value() const { return state_->value; }

namespace {

constexpr auto effects = detail::Cancellation::with_effects;
constexpr auto no_effects = detail::Cancellation::without_effects;

// Runs an operation of a participant's state `s` for a token form; one moved from completes
// with errc::object_gone.
template <class Op, class... Values, class... Args>
void start(const char* what, Op op, detail::Cancellation c,
           std::shared_ptr<detail::ParticipantState> s,
           asio::any_completion_handler<void(error_code, Values...)> handler, diagnostics* diag,
           Args&&... args) {
  if (!s) return detail::refuse_gone(std::move(handler), diag, what);
  auto executor = s->core->executor();
  detail::launch(executor, op(std::move(s), std::forward<Args>(args)...), std::move(handler), diag,
                 c);
}

// The same for an awaitable form: on the Client's executor, as a child of the caller.
template <class Op, class... Args>
auto run(const char* what, Op op, detail::Cancellation c,
         const std::shared_ptr<detail::ParticipantState>& s, Args&&... args) {
  if (!s) throw_error(errc::object_gone, std::string(what) + ": the Participant was moved from");
  return detail::run_on(s->core->executor(), op(s, std::forward<Args>(args)...), c);
}

}  // namespace

asio::awaitable<LeaderKey> Participant::campaign() {
  return run("campaign", detail::campaign_of, detail::Cancellation::set_by_op, state_, false);
}

void Participant::start_campaign(State s, Handler<LeaderKey> handler, diagnostics* diag) {
  start("campaign", detail::campaign_of, detail::Cancellation::set_by_op, std::move(s),
        std::move(handler), diag, false);
}

asio::awaitable<std::int64_t> Participant::acquire_lease() {
  return run("acquire_lease", detail::acquire_lease_of, effects, state_);
}

void Participant::start_acquire_lease(State s, Handler<std::int64_t> handler, diagnostics* diag) {
  start("acquire_lease", detail::acquire_lease_of, effects, std::move(s), std::move(handler), diag);
}

std::optional<std::int64_t> Participant::lease_id() const {
  if (!state_->lease) return std::nullopt;
  return state_->lease->id;
}

asio::awaitable<boost::system::error_code> Participant::keep_alive() {
  return run("keep_alive", detail::keep_alive_of, no_effects, state_);
}

void Participant::start_keep_alive(State s, Handler<boost::system::error_code> handler,
                                   diagnostics* diag) {
  start("keep_alive", detail::keep_alive_of, no_effects, std::move(s), std::move(handler), diag);
}

bool Participant::is_leader() const { return state_->term && state_->term->leading(); }

std::optional<LeaderKey> Participant::leader_key() const {
  if (!state_->term) return std::nullopt;
  return state_->term->key();
}

std::optional<lease_clock::time_point> Participant::deadline() const {
  const auto& s = *state_;
  if (s.term && (!s.campaign || !s.lease)) return s.term->lease()->clock.deadline();
  if (s.lease) return s.lease->clock.deadline();
  return std::nullopt;
}

std::chrono::seconds Participant::granted_ttl() const {
  const auto& s = *state_;
  if (s.lease) return s.lease->clock.ttl();
  if (s.term) return s.term->lease()->clock.ttl();
  return std::chrono::seconds(0);
}

std::optional<std::chrono::milliseconds> Participant::takeover_delay() const {
  return state_->chosen_delay;
}

std::optional<std::chrono::milliseconds> Participant::takeover_wait() const {
  return state_->waited;
}

asio::awaitable<void> Participant::resign() {
  return run("resign", detail::resign_of, effects, state_);
}

void Participant::start_resign(State s, Handler<> handler, diagnostics* diag) {
  start("resign", detail::resign_of, effects, std::move(s), std::move(handler), diag);
}

asio::awaitable<void> Participant::proclaim(std::string value) {
  return run("proclaim", detail::proclaim_of, effects, state_, std::move(value));
}

void Participant::start_proclaim(State s, Handler<> handler, diagnostics* diag, std::string value) {
  start("proclaim", detail::proclaim_of, effects, std::move(s), std::move(handler), diag,
        std::move(value));
}

asio::awaitable<std::int64_t> Participant::put_if_leader(std::string key, std::string value) {
  return run("put_if_leader", detail::put_if_leader_of, effects, state_, std::move(key),
             std::move(value));
}

void Participant::start_put_if_leader(State s, Handler<std::int64_t> handler, diagnostics* diag,
                                      std::string key, std::string value) {
  start("put_if_leader", detail::put_if_leader_of, effects, std::move(s), std::move(handler), diag,
        std::move(key), std::move(value));
}

asio::awaitable<std::optional<LeaderInfo>> Participant::leader() {
  return run("leader", detail::leader_of, no_effects, state_);
}

void Participant::start_leader(State s, Handler<std::optional<LeaderInfo>> handler,
                               diagnostics* diag) {
  start("leader", detail::leader_of, no_effects, std::move(s), std::move(handler), diag);
}

asio::awaitable<std::vector<LeaderInfo>> Participant::candidates() {
  return run("candidates", detail::candidates_of, no_effects, state_);
}

void Participant::start_candidates(State s, Handler<std::vector<LeaderInfo>> handler,
                                   diagnostics* diag) {
  start("candidates", detail::candidates_of, no_effects, std::move(s), std::move(handler), diag);
}

std::shared_ptr<detail::LeaseState> detail::access::participant_lease(const Participant& p) {
  const auto& s = *p.state_;
  if (s.term) return s.term->lease();
  return s.lease;
}

std::shared_ptr<detail::ParticipantState> detail::access::participant_state(const Participant& p) {
  return p.state_;
}

void detail::access::on_in_line(Participant& p, std::function<void()> f) {
  p.state_->on_in_line = std::move(f);
}

Observer Participant::observe() { return Observer(state_->core, state_->election); }

}  // namespace election
