#include "election/participant.hpp"
#include "access.hpp"

#include "campaign.hpp"
#include "election/first_of.hpp"
#include "election_feed.hpp"
#include "kv.hpp"
#include "launch.hpp"
#include "lease_state.hpp"
#include "session_state.hpp"
#include "term.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <charconv>

namespace election {

namespace asio = boost::asio;
using boost::system::error_code;
using boost::system::system_error;

std::chrono::milliseconds default_takeover_delay(std::string_view version) {
  constexpr std::chrono::milliseconds covered(200);
  int part[3] = {0, 0, 0};
  const char* at = version.data();
  const char* end = version.data() + version.size();
  for (int i = 0; i < 3; ++i) {
    auto [next, ec] = std::from_chars(at, end, part[i]);
    if (ec != std::errc{}) return covered;  // not a version we can read: be safe
    at = next;
    if (i < 2) {
      if (at == end || *at != '.') return covered;
      ++at;
    }
  }
  const auto [major, minor, patch] = std::tuple(part[0], part[1], part[2]);
  // The fix for stale-leader lease revocation: 3.4.31 (etcd #17465), 3.5.13 (#17425), 3.6.0.
  const bool fixed =
      major > 3 ||
      (major == 3 && (minor >= 6 || (minor == 5 && patch >= 13) || (minor == 4 && patch >= 31)));
  return fixed ? std::chrono::milliseconds(0) : covered;
}

namespace detail {

/// A campaign in progress, and how it is stopped from outside (resign, the destructor).
struct CampaignRun {
  void request_stop(error_code why, std::string what) {
    if (stopped) return;
    stopped = true;
    reason = why;
    message = std::move(what);
    cut.emit(asio::cancellation_type::terminal);
  }
  // The campaign runs bound to `cut`: stopping it is a cancellation, and the caller's own
  // cancellation is passed on to it (campaign_of). No race of two coroutines for every
  // campaign in line.
  asio::cancellation_signal cut;
  bool stopped = false;
  error_code reason;
  std::string message;
};

class ParticipantState : public std::enable_shared_from_this<ParticipantState> {
 public:
  ParticipantState(std::shared_ptr<ClientCore> core, std::string election, std::string value,
                   ParticipantOptions options, std::shared_ptr<SessionState> session)
      : core(std::move(core)),
        election(std::move(election)),
        value(std::move(value)),
        options(options),
        session(std::move(session)) {}

  // Takes the lease out of use: no renewal from now on, its revocation in the background.
  // A Session's lease is not this participant's to revoke: its key is deleted instead.
  // Returns that withdrawal, or the one still running from before, or nothing.
  std::shared_ptr<Withdrawal> withdraw() {
    // A leadership this participant ends itself is resigned with a signature, so that the next
    // candidate leads without the takeover delay. One whose key was deleted has nothing to sign.
    std::optional<Signature> sign;
    if (lease && term && term->lease() == lease && term->reason() != errc::key_deleted)
      sign = Signature{election, term->key().key, term->key().create_revision};
    if (lease && session) {
      auto key = candidate_key(election, lease->id);
      withdrawal =
          Withdrawal::start_key(std::exchange(lease, nullptr), std::move(key), std::move(sign));
    } else if (lease) {
      withdrawal = Withdrawal::start(std::exchange(lease, nullptr), std::move(sign));
    }
    if (withdrawal && withdrawal->finished() && !withdrawal->result()) return nullptr;
    return withdrawal;
  }

  asio::awaitable<Won> run(std::shared_ptr<CampaignRun> campaign_run) {
    // Its own coroutine, bound to the run's `cut`: whatever comes through that (a stop, or the
    // caller's cancellation as campaign()'s filter let it) is for the campaign.
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    auto delay = options.takeover_delay;
    if (!delay) delay = default_takeover_delay(co_await core->server_version());
    chosen_delay = delay;
    waited.reset();
    if (session) {
      // The last key's deletion lands first (this participant's, or a destroyed one's in the
      // same election): a retried delete must not take the new key.
      if (auto w = withdrawal; w && !w->finished()) co_await w->done.wait();
      if (auto it = session->leaving.find(election); it != session->leaving.end()) {
        auto w = it->second.lock();
        if (w && !w->finished()) co_await w->done.wait();
        session->leaving.erase(election);
      }
      if (!lease || lease->lost()) lease = co_await session->current();
    }
    // Named, not a temporary in the co_await: g++ 12 destroys such a temporary twice.
    // The lease lost while in line stops the campaign as a resign would, with the lease's
    // reason.
    auto lost = [weak = std::weak_ptr<CampaignRun>(campaign_run)](error_code reason) {
      if (auto r = weak.lock())
        r->request_stop(reason, "campaign: the lease was lost while waiting in line");
    };
    CampaignRequest request{core,   election,   value, options.ttl, options.lease.margin,
                            *delay, on_in_line, lost};
    co_return co_await run_campaign(request, lease);
  }

  // The Participant is gone: whatever runs stops, the lease is withdrawn, the names released;
  // operations started later fail with errc::object_gone.
  void end() {
    gone = true;
    if (campaign)
      campaign->request_stop(asio::error::operation_aborted,
                             "campaign: the participant was destroyed");
    if (term) term->end(asio::error::operation_aborted);
    auto withdrawn = withdraw();  // the revocation is in flight before this returns
    core->release_election(election);
    if (session) {
      session->release(election);
      session->leave(election, withdrawn);
    }
  }

  // Throws errc::object_gone once the Participant is destroyed.
  void check_live(const char* what) const {
    if (gone) throw_error(errc::object_gone, std::string(what) + ": the Participant was destroyed");
  }

  void start_term(const Won& won) {
    auto t = std::make_shared<Term>(won.key, won.read_revision + 1, lease,
                                    ElectionFeed::of(core, election));
    term = t;
    // A term that ends, however it ends, withdraws its lease: nothing renews it after.
    t->start([weak = weak_from_this()](Term& ended) {
      if (auto self = weak.lock(); self && self->term.get() == &ended) self->withdraw();
    });
  }

  std::shared_ptr<ClientCore> core;
  std::string election;
  std::string value;
  ParticipantOptions options;
  std::shared_ptr<LeaseState> lease;       // in use: by the campaign, the term, acquire_lease()
  std::shared_ptr<Term> term;              // the current or last leadership
  std::shared_ptr<CampaignRun> campaign;   // the campaign in progress
  std::shared_ptr<Withdrawal> withdrawal;  // the last lease taken out of use
  std::shared_ptr<SessionState> session;   // for a participant on a Session's lease
  std::optional<std::chrono::milliseconds> chosen_delay;
  std::optional<std::chrono::milliseconds> waited;  // of the delay, by the last win
  bool proclaiming = false;
  bool acquiring = false;
  bool gone = false;                 // the Participant was destroyed
  std::function<void()> on_in_line;  // CampaignRequest::in_line of every campaign
};

namespace {

// Sets a flag for a scope: one call of a kind at a time.
class Busy {
 public:
  explicit Busy(bool& flag) : flag_(flag) { flag_ = true; }
  ~Busy() { flag_ = false; }
  Busy(const Busy&) = delete;
  Busy& operator=(const Busy&) = delete;

 private:
  bool& flag_;
};

}  // namespace

// The operations, on the participant's state: an operation in flight holds it, so the
// Participant may go meanwhile.
asio::awaitable<LeaderKey> campaign_of(std::shared_ptr<ParticipantState> s) {
  s->check_live("campaign");
  if (s->campaign)
    throw_error(errc::invalid_argument,
                "campaign: another campaign() of this participant is in progress");
  if (s->term && !s->term->ended())
    throw_error(errc::invalid_argument,
                "campaign: this participant already leads (resign() first)");
  if (s->acquiring) throw_error(errc::invalid_argument, "campaign: acquire_lease() is in progress");
  auto run = std::make_shared<detail::CampaignRun>();
  s->campaign = run;
  std::exception_ptr failure;
  try {
    // The caller's cancellation (as this coroutine's filter lets it through) reaches the
    // campaign through `cut` too.
    auto state = co_await asio::this_coro::cancellation_state;
    auto outer = state.slot();  // not connected: nothing can cancel this coroutine
    if (outer.is_connected())
      outer.assign([run](asio::cancellation_type type) { run->cut.emit(type); });
    std::optional<Won> result;
    try {
      result = co_await asio::co_spawn(
          s->core->executor(), s->run(run),
          asio::bind_cancellation_slot(run->cut.slot(), asio::use_awaitable));
    } catch (const system_error& e) {
      if (outer.is_connected()) outer.clear();
      if (run->stopped && e.code() == asio::error::operation_aborted)
        throw system_error(run->reason, run->message);
      throw;
    }
    if (outer.is_connected()) outer.clear();
    if (run->stopped) throw system_error(run->reason, run->message);
    s->waited = result->waited;
    // A win that lands together with a cancellation must not stand: the caller has moved on.
    auto cancellation = co_await asio::this_coro::cancellation_state;
    if (cancellation.cancelled() != asio::cancellation_type::none)
      throw system_error(asio::error::operation_aborted, "campaign");
    s->campaign.reset();
    const auto& won = *result;
    s->start_term(won);
    co_return won.key;
  } catch (...) {
    failure = std::current_exception();
  }
  // However the campaign ended, its lease goes, and the key with it: started here, before any
  // co_await, so a cancelled campaign withdraws all the same.
  if (s->campaign == run) s->campaign.reset();
  if (auto withdrawal = s->withdraw(); withdrawal && !withdrawal->finished()) {
    // Give etcd a moment (one attempt's time) to confirm, so that the key is usually gone when
    // campaign() throws; the revocation goes on in the background if not. A cancelled
    // coroutine's co_await throws at once, so that is switched off for this wait only (the
    // caller's cancellation state itself is left as it is).
    const bool throws = co_await asio::this_coro::throw_if_cancelled();
    co_await asio::this_coro::throw_if_cancelled(false);
    asio::steady_timer limit(s->core->executor(), s->core->attempt_timeout());
    try {
      co_await first_of(withdrawal->done.wait(), limit.async_wait(asio::use_awaitable));
    } catch (const system_error&) {
    }
    co_await asio::this_coro::throw_if_cancelled(throws);
  }
  std::rethrow_exception(failure);
}

asio::awaitable<std::int64_t> acquire_lease_of(std::shared_ptr<ParticipantState> s) {
  s->check_live("acquire_lease");
  if (s->campaign)
    throw_error(errc::invalid_argument, "acquire_lease: a campaign() is in progress");
  if (s->acquiring)
    throw_error(errc::invalid_argument, "acquire_lease: another acquire_lease() is in progress");
  if (s->lease && s->lease->lost()) s->withdraw();
  if (!s->lease) {
    detail::Busy busy(s->acquiring);
    if (s->session)
      s->lease = co_await s->session->current();
    else
      s->lease = co_await detail::grant_lease(s->core, s->options.ttl, s->options.lease.margin);
  }
  co_return s->lease->id;
}

asio::awaitable<boost::system::error_code> keep_alive_of(std::shared_ptr<ParticipantState> s) {
  s->check_live("keep_alive");
  if (s->campaign)
    throw_error(errc::not_leader, "keep_alive: this participant is campaigning, not leading");
  auto term = s->term;
  if (!term) throw_error(errc::not_leader, "keep_alive: this participant has not won");
  co_await term->ended_event().wait();
  co_return term->reason();
}

asio::awaitable<void> resign_of(std::shared_ptr<ParticipantState> s) {
  s->check_live("resign");
  if (s->campaign)
    s->campaign->request_stop(errc::resigned, "campaign: resign() was called while campaigning");
  // The leader stops believing it leads, and its lease stops being renewed, before anything is
  // sent: whatever becomes of this call, nothing acts on the old leadership from here on.
  if (s->term) s->term->end(errc::resigned);
  auto withdrawal = s->withdraw();
  if (!withdrawal) co_return;
  if (!withdrawal->finished()) {
    asio::steady_timer limit(s->core->executor(), s->core->options().request_timeout);
    auto waited = co_await first_of(withdrawal->done.wait(), limit.async_wait(asio::use_awaitable));
    if (waited.index() == 1)
      throw_error(errc::timeout,
                  "resign: etcd did not confirm the lease's revocation within the request "
                  "timeout; it is tried again in the background until the lease would have "
                  "expired");
  }
  if (withdrawal->result()) throw system_error(withdrawal->result(), withdrawal->message());
}

asio::awaitable<void> proclaim_of(std::shared_ptr<ParticipantState> s, std::string value) {
  s->check_live("proclaim");
  detail::check_value_size(value, "proclaim");
  auto term = s->term;
  if (!term || !term->leading())
    throw_error(errc::not_leader, "proclaim: this participant does not lead");
  if (s->proclaiming)
    throw_error(errc::invalid_argument, "proclaim: another proclaim() is in flight");
  detail::Busy busy(s->proclaiming);
  const auto& key = term->key();
  auto request = detail::guarded_by(key.key, key.create_revision);
  detail::put_candidate(request, key.key, value, key.lease);
  auto reply = co_await s->core->call_retrying(
      "proclaim", s->core->kv().async(), &etcdserverpb::KV::Stub::async::Txn, std::move(request));
  if (!reply.succeeded())
    throw_error(errc::not_leader, "proclaim: leader key " + key.key + " at revision " +
                                      std::to_string(key.create_revision) + " no longer exists");
  s->value = std::move(value);
}

asio::awaitable<std::int64_t> put_if_leader_of(std::shared_ptr<ParticipantState> s, std::string key,
                                               std::string value) {
  s->check_live("put_if_leader");
  detail::check_value_size(value, "put_if_leader");
  s->core->check_outside_elections(key, "put_if_leader");
  auto term = s->term;
  if (!term || !term->leading())
    throw_error(errc::not_leader, "put_if_leader " + key + ": this participant does not lead");
  const auto& own = term->key();
  auto request = detail::guarded_by(own.key, own.create_revision);
  auto* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(std::move(value));
  // Not retried: a write that etcd may have applied is not sent twice.
  auto reply = co_await s->core->call("put_if_leader", s->core->kv().async(),
                                      &etcdserverpb::KV::Stub::async::Txn, std::move(request));
  if (!reply.succeeded())
    throw_error(errc::not_leader, "put_if_leader " + key + ": etcd refused the write, leader key " +
                                      own.key + " at revision " +
                                      std::to_string(own.create_revision) + " no longer exists");
  co_return reply.header().revision();
}

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
  return run("campaign", detail::campaign_of, effects, state_);
}

void Participant::start_campaign(State s, Handler<LeaderKey> handler, diagnostics* diag) {
  start("campaign", detail::campaign_of, effects, std::move(s), std::move(handler), diag);
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

void detail::access::on_in_line(Participant& p, std::function<void()> f) {
  p.state_->on_in_line = std::move(f);
}

Observer Participant::observe() { return Observer(state_->core, state_->election); }

}  // namespace election
