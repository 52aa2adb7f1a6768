#include "election/participant.hpp"

#include "election/detail/async_event.hpp"
#include "election/detail/backoff.hpp"
#include "election/detail/race.hpp"
#include "kv.hpp"
#include "lease_state.hpp"
#include "watch.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace election {
namespace detail {

namespace asio = boost::asio;
using boost::system::error_code;
using boost::system::system_error;

namespace {

// A transaction that applies while `key` exists with create revision `revision`, or, with 0,
// while it does not exist. resign(), proclaim(), put_if_leader() and entering the line are all
// such guarded Txns: one proposal each, which any member commits as soon as the cluster has a
// raft leader, and safe to send again.
etcdserverpb::TxnRequest guarded_by(const std::string& key, std::int64_t revision) {
  etcdserverpb::TxnRequest request;
  auto* compare = request.add_compare();
  compare->set_result(etcdserverpb::Compare::EQUAL);
  compare->set_target(etcdserverpb::Compare::CREATE);
  compare->set_key(key);
  compare->set_create_revision(revision);
  return request;
}

// A candidate key's put: its value, attached to its lease.
void put_candidate(etcdserverpb::TxnRequest& request, const std::string& key,
                   const std::string& value, std::int64_t lease) {
  auto* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
}

// Completes when `key` (created at `revision`) is deleted, watching from `from`.
asio::awaitable<void> key_deleted(std::shared_ptr<ClientCore> core, std::string key,
                                  std::int64_t revision, std::int64_t from) {
  for (;;) {
    KeyWatch watch(core, key, {}, from);
    bool compacted = false;
    try {
      for (;;) {
        auto batch = co_await watch.next();
        for (const auto& event : batch.events)
          if (event.type() == mvccpb::Event::DELETE) co_return;
      }
    } catch (const system_error& e) {
      if (e.code() != errc::compacted) throw;
      compacted = true;
    }
    if (compacted) {
      // History is gone: look at the key itself, then watch on from now.
      auto reply = co_await range(*core, key);
      if (reply.kvs_size() == 0 || reply.kvs(0).create_revision() != revision) co_return;
      from = reply.header().revision() + 1;
    }
  }
}

}  // namespace

/// One leadership: from a won campaign until the first thing that ends it.
struct Term {
  Term(asio::any_io_executor executor, LeaderKey key)
      : key(std::move(key)), ended(std::move(executor)) {}

  void end(error_code why) {
    if (ended.is_set()) return;
    reason = why;
    ended.set();
  }

  LeaderKey key;
  AsyncEvent ended;
  error_code reason;
  asio::cancellation_signal stop_monitor;
};

class ParticipantState : public std::enable_shared_from_this<ParticipantState> {
 public:
  ParticipantState(Client& client, std::string election, std::string value,
                   ParticipantOptions options)
      : client(&client),
        core(client.core()),
        election(std::move(election)),
        value(std::move(value)),
        options(options),
        closing(core->executor()) {}

  // Waits in line with a live lease; returns the verified key and the revision it was read at.
  // A live lease for the next campaign: the kept one, or a new grant. A lease given up for its
  // local deadline may still exist in etcd (a frozen or restarted etcd restores it with a fresh
  // TTL), and its key would then stand in the queue as a phantom leader: it is revoked in the
  // background, for as long as its TTL could keep it alive.
  asio::awaitable<void> ensure_lease() {
    if (lease && lease->lost()) {
      if (lease->lost_reason() == errc::lease_deadline_passed)
        asio::co_spawn(core->executor(), revoke_abandoned(core, lease->id(), lease->ttl()),
                       [](std::exception_ptr) {});
      lease.reset();
    }
    if (!lease) lease.emplace(co_await Lease::grant(*client, options.ttl, options.lease));
  }

  static asio::awaitable<void> revoke_abandoned(std::shared_ptr<ClientCore> core, std::int64_t id,
                                                std::chrono::seconds ttl) {
    asio::steady_timer timer(core->executor());
    Backoff backoff(std::chrono::milliseconds(200), std::chrono::seconds(2));
    // etcd extends every lease by its TTL plus an election timeout when its leader changes.
    const auto give_up = std::chrono::steady_clock::now() + 2 * ttl + std::chrono::seconds(2);
    while (std::chrono::steady_clock::now() < give_up && !core->tracker()->closed()) {
      bool done = true;
      try {
        co_await revoke_lease(*core, id);
      } catch (const system_error&) {
        done = false;
      }
      if (done) co_return;
      timer.expires_after(backoff.next());
      co_await timer.async_wait(asio::use_awaitable);
    }
  }

  // Puts the candidate in line: its key (the election name and its lease in hex, as etcd's own
  // Campaign names it) created with the lease unless it exists, in one guarded transaction that
  // is safe to send again. Returns the key's create revision, its place in line.
  asio::awaitable<std::int64_t> enter_line(const std::string& own_key, std::int64_t id) {
    for (;;) {
      auto request = guarded_by(own_key, 0);
      put_candidate(request, own_key, value, id);
      request.add_failure()->mutable_request_range()->set_key(own_key);
      auto reply = co_await core->call_retrying(
          "campaign", core->kv().async(), &etcdserverpb::KV::Stub::async::Txn, std::move(request));
      if (reply.succeeded()) co_return reply.header().revision();
      const auto& kvs = reply.responses(0).response_range().kvs();
      if (kvs.empty()) continue;  // deleted in between: create it
      const auto revision = kvs[0].create_revision();
      if (kvs[0].value() == value) co_return revision;
      // Kept from an earlier campaign with another value: proclaim this one, as etcd does.
      auto update = guarded_by(own_key, revision);
      put_candidate(update, own_key, value, id);
      auto updated = co_await core->call_retrying(
          "campaign", core->kv().async(), &etcdserverpb::KV::Stub::async::Txn, std::move(update));
      if (updated.succeeded()) co_return revision;
    }
  }

  // enter_line(), ended by the lease's loss.
  asio::awaitable<std::int64_t> enter_line_while_leased(const std::string& own_key,
                                                        std::int64_t id) {
    auto place = co_await first_of(enter_line(own_key, id), lease->wait_lost());
    if (place.index() == 1)
      throw system_error(std::get<1>(place), "campaign: the lease was lost while waiting in line");
    co_return std::get<0>(place);
  }

  // Waits in line with a live lease; returns the won key and the revision it leads from.
  //
  // The candidate's key is put in line with a transaction, and the Client's watch of the
  // election (the one its Observers share) says when it is first: the lowest create revision
  // under the prefix leads, as in etcd's own Campaign. The win is then confirmed by a read of
  // the key (the watch may lag behind etcd: still there with the same create revision means
  // still first, since nothing can be created ahead of it). This is the protocol etcd's Go
  // client runs (etcdctl elect), rather than etcd's Campaign RPC, for three reasons: the watch
  // event is the predecessor's deletion itself, while the Campaign RPC reads the election again
  // after it; the RPC waits on the one member it went to, which a frozen member holds for as
  // long as it is frozen and a deposed raft leader for etcd's request timeout after; and etcd
  // resigns a Campaign whose call is cancelled, a connection dropped in line included.
  asio::awaitable<std::pair<LeaderKey, std::int64_t>> run_campaign() {
    co_await ensure_lease();
    const auto id = lease->id();
    const auto own_key = candidate_key(election, id);
    // In line, the lease is held past its local deadline (see LeaseState::hold_past_deadline);
    // from the win on, or when the campaign ends otherwise, the deadline rules again.
    struct Hold {
      explicit Hold(std::shared_ptr<LeaseState> state) : state(std::move(state)) {
        this->state->hold_past_deadline = true;
      }
      ~Hold() { state->hold_past_deadline = false; }
      std::shared_ptr<LeaseState> state;
    } hold(lease->state());
    Observer line(*client, election);
    asio::steady_timer pause(core->executor());
    auto revision = co_await enter_line_while_leased(own_key, id);
    bool first = false;  // the watch's last word: this key leads
    std::int64_t read_revision = 0;
    for (;;) {
      if (!first) {
        auto result = co_await first_of(line.next(), lease->wait_lost());
        if (result.index() == 1)
          throw system_error(std::get<1>(result),
                             "campaign: the lease was lost while waiting in line");
        const auto& event = std::get<0>(result);
        if (event.leader && event.leader->create_revision < revision) continue;  // in line
        first = event.leader && event.leader->create_revision == revision &&
                event.leader->key == own_key;
        if (!first) {
          // No leader, or a later key: this one went (an operator's delete, say), unless the
          // watch is behind etcd. The transaction tells, and puts the key in line again.
          revision = co_await enter_line_while_leased(own_key, id);
          continue;
        }
      }
      std::optional<etcdserverpb::RangeResponse> check;
      try {
        check = co_await range(*core, own_key);
      } catch (const system_error& e) {
        if (e.code() == errc::client_closed || e.code() == errc::auth_failed ||
            e.code() == errc::permission_denied)
          throw;
      }
      if (!check) {
        // etcd out of reach for now: look again shortly, for as long as the lease lives.
        pause.expires_after(std::chrono::milliseconds(500));
        auto waited = co_await first_of(pause.async_wait(asio::use_awaitable), lease->wait_lost());
        if (waited.index() == 1)
          throw system_error(std::get<1>(waited),
                             "campaign: the lease was lost while waiting in line");
        continue;
      }
      if (check->kvs_size() == 1 && check->kvs(0).create_revision() == revision &&
          check->kvs(0).lease() == id) {
        read_revision = check->header().revision();
        break;
      }
      // The watch was behind: the key went since. In line again, at the back.
      first = false;
      revision = co_await enter_line_while_leased(own_key, id);
    }

    if (lease->lost()) throw system_error(lease->lost_reason(), "campaign");
    // Won while no renewal has been answered within the deadline (etcd was away for a while):
    // lead only once one is, so the deadline again bounds how long etcd can keep the key.
    if (std::chrono::steady_clock::now() >= lease->deadline()) {
      asio::steady_timer poll(core->executor());
      const auto give_up = std::chrono::steady_clock::now() + core->options().request_timeout;
      while (std::chrono::steady_clock::now() >= lease->deadline() && !lease->lost() &&
             std::chrono::steady_clock::now() < give_up) {
        poll.expires_after(std::chrono::milliseconds(20));
        co_await poll.async_wait(asio::use_awaitable);
      }
      if (lease->lost()) throw system_error(lease->lost_reason(), "campaign");
      if (std::chrono::steady_clock::now() >= lease->deadline()) {
        lease->state()->lose(errc::lease_deadline_passed);
        throw_error(errc::lease_deadline_passed,
                    "campaign: won, but no renewal of the lease was answered in time");
      }
    }
    co_return std::pair{LeaderKey{election, own_key, revision, id}, read_revision};
  }

  void start_term(LeaderKey key, std::int64_t read_revision) {
    auto t = std::make_shared<Term>(core->executor(), std::move(key));
    term = t;
    asio::co_spawn(core->executor(), monitor(shared_from_this(), t, read_revision + 1),
                   asio::bind_cancellation_slot(t->stop_monitor.slot(), [](std::exception_ptr) {}));
  }

  // Ends the term at the first of: the lease lost, the key deleted, or the term ended by us.
  static asio::awaitable<void> monitor(std::shared_ptr<ParticipantState> self,
                                       std::shared_ptr<Term> t, std::int64_t from) {
    error_code reason;
    try {
      auto result =
          co_await first_of(first_of(self->lease->wait_lost(),
                                     key_deleted(self->core, t->key.key, t->key.revision, from)),
                            t->ended.wait());
      if (result.index() == 1) co_return;  // ended by resign() or the destructor
      const auto& cause = std::get<0>(result);
      reason = cause.index() == 0 ? std::get<0>(cause) : error_code(errc::key_deleted);
    } catch (const system_error& e) {
      if (e.code() == asio::error::operation_aborted) co_return;
      reason = e.code();
    }
    // A process that stalled (a GC pause, SIGSTOP) past its local deadline can see the key's
    // deletion or the lease's expiry before the deadline's own timer runs. Its leadership ended
    // at the deadline, earlier than either: say so, or a caller trusting the reason (and a
    // deadline it reports with it) believes it led until it noticed.
    if (self->lease && std::chrono::steady_clock::now() >= self->lease->deadline())
      reason = errc::lease_deadline_passed;
    t->end(reason);
  }

  // Takes this candidate out of the election: the lease's revocation deletes its key.
  asio::awaitable<void> withdraw() {
    if (!lease) co_return;
    Lease doomed = std::move(*lease);
    lease.reset();
    try {
      co_await doomed.revoke();
    } catch (const std::exception&) {
      // Unreachable or closed: the lease expires after its TTL instead.
    }
  }

  Client* client;
  std::shared_ptr<ClientCore> core;
  std::string election;
  std::string value;
  ParticipantOptions options;
  std::optional<Lease> lease;
  std::shared_ptr<Term> term;
  AsyncEvent closing;
  bool campaigning = false;  // one campaign() at a time
};

}  // namespace detail

namespace asio = boost::asio;
using boost::system::system_error;

Participant::Participant(Client& client, std::string election, std::string value,
                         ParticipantOptions options) {
  detail::check_election_name(election);
  detail::check_value_size(value, "participant value");
  if (options.ttl.count() <= 0)
    throw_error(errc::invalid_ttl, "participant TTL " + std::to_string(options.ttl.count()) + " s");
  if (options.takeover_delay.count() < 0)
    throw_error(errc::invalid_argument, "participant takeover delay " +
                                            std::to_string(options.takeover_delay.count()) +
                                            " ms is negative");
  state_ = std::make_shared<detail::ParticipantState>(client, std::move(election), std::move(value),
                                                      options);
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
  auto s = state_;
  s->closing.set();  // a campaign in flight withdraws itself
  if (s->term) {
    s->term->end(asio::error::operation_aborted);
    s->term->stop_monitor.emit(asio::cancellation_type::terminal);
  }
  if (s->lease && !s->lease->lost()) {
    asio::co_spawn(
        s->core->executor(), [s]() -> asio::awaitable<void> { co_await s->withdraw(); },
        [](std::exception_ptr) {});
  }
}

const std::string& Participant::election() const { return state_->election; }
const std::string& Participant::value() const { return state_->value; }

asio::awaitable<LeaderKey> Participant::campaign() {
  auto s = state_;
  if (s->term && !s->term->ended.is_set())
    throw_error(errc::invalid_argument, "campaign: this participant is already the leader");
  if (s->campaigning)
    throw_error(errc::invalid_argument, "campaign: this participant is already campaigning");
  struct Campaigning {
    explicit Campaigning(bool& flag) : flag(flag) { flag = true; }
    ~Campaigning() { flag = false; }
    bool& flag;
  } campaigning(s->campaigning);
  std::exception_ptr failure;
  bool aborted = false;
  try {
    auto result = co_await detail::first_of(s->run_campaign(), s->closing.wait());
    if (result.index() == 1)
      throw system_error(asio::error::operation_aborted, "campaign: the participant was destroyed");
    if (s->options.takeover_delay.count() > 0) {
      // Won, but not acting yet: a predecessor whose key was removed early is given the time
      // to see it. The term's monitor starts after, from the win's revision: a deletion or a
      // lost lease meanwhile still ends the term at once.
      asio::steady_timer settle(s->core->executor(), s->options.takeover_delay);
      auto waited =
          co_await detail::first_of(settle.async_wait(asio::use_awaitable), s->closing.wait());
      if (waited.index() == 1)
        throw system_error(asio::error::operation_aborted,
                           "campaign: the participant was destroyed");
    }
    // A win that lands together with a cancellation must not stand: the caller has moved on.
    auto cancellation = co_await asio::this_coro::cancellation_state;
    if (cancellation.cancelled() != asio::cancellation_type::none)
      throw system_error(asio::error::operation_aborted, "campaign");
    auto& [key, revision] = std::get<0>(result);
    s->start_term(key, revision);
    co_return key;
  } catch (const system_error& e) {
    failure = std::current_exception();
    aborted = e.code() == asio::error::operation_aborted;
  }
  // The clean-up must run even though this coroutine was cancelled.
  if (aborted) co_await asio::this_coro::reset_cancellation_state();
  co_await s->withdraw();
  std::rethrow_exception(failure);
}

asio::awaitable<std::int64_t> Participant::acquire_lease() {
  auto s = state_;
  co_await s->ensure_lease();
  co_return s->lease->id();
}

std::optional<std::int64_t> Participant::lease_id() const {
  if (!state_->lease) return std::nullopt;
  return state_->lease->id();
}

asio::awaitable<boost::system::error_code> Participant::keep_alive() {
  auto term = state_->term;
  if (!term) throw_error(errc::not_leader, "keep_alive: this participant has not won");
  co_await term->ended.wait();
  co_return term->reason;
}

bool Participant::is_leader() const {
  const auto& s = *state_;
  return s.term && !s.term->ended.is_set() && s.lease && !s.lease->lost() &&
         std::chrono::steady_clock::now() < s.lease->deadline();
}

std::optional<LeaderKey> Participant::leader_key() const {
  if (!state_->term) return std::nullopt;
  return state_->term->key;
}

std::optional<std::chrono::steady_clock::time_point> Participant::deadline() const {
  if (!state_->lease) return std::nullopt;
  return state_->lease->deadline();
}

std::chrono::seconds Participant::granted_ttl() const {
  return state_->lease ? state_->lease->ttl() : std::chrono::seconds(0);
}

// resign() and proclaim() are the transactions etcd's Resign and Proclaim run, sent as KV Txns
// (detail::guarded_by). etcd's election service first opens a session on the lease, which
// renews it through the raft leader: with that leader frozen or gone, a follower holds the call
// for up to its request timeout, and the handover waits for it.
asio::awaitable<void> Participant::resign() {
  auto s = state_;
  std::exception_ptr failure;
  if (auto term = s->term; term && !term->ended.is_set()) {
    term->end(errc::resigned);  // the leader stops believing it leads before anything is sent
    term->stop_monitor.emit(asio::cancellation_type::terminal);
    // A key that is already gone, or belongs to a later campaign, is left alone.
    auto request = detail::guarded_by(term->key.key, term->key.revision);
    request.add_success()->mutable_request_delete_range()->set_key(term->key.key);
    try {
      co_await s->core->call_retrying("resign", s->core->kv().async(),
                                      &etcdserverpb::KV::Stub::async::Txn, std::move(request));
    } catch (const system_error&) {
      failure = std::current_exception();
    }
  }
  // Revoking the lease also deletes the key, should the delete have failed.
  co_await s->withdraw();
  if (failure) std::rethrow_exception(failure);
}

asio::awaitable<void> Participant::proclaim(std::string value) {
  auto s = state_;
  detail::check_value_size(value, "proclaim");
  auto term = s->term;
  if (!term) throw_error(errc::not_leader, "proclaim: this participant has not won");
  auto request = detail::guarded_by(term->key.key, term->key.revision);
  detail::put_candidate(request, term->key.key, value, term->key.lease);
  auto reply = co_await s->core->call_retrying(
      "proclaim", s->core->kv().async(), &etcdserverpb::KV::Stub::async::Txn, std::move(request));
  if (!reply.succeeded())
    throw_error(errc::not_leader, "proclaim: leader key " + term->key.key + " at revision " +
                                      std::to_string(term->key.revision) + " no longer exists");
  s->value = std::move(value);
}

asio::awaitable<std::int64_t> Participant::put_if_leader(std::string key, std::string value) {
  auto s = state_;
  detail::check_value_size(value, "put_if_leader");
  auto term = s->term;
  if (!term) throw_error(errc::not_leader, "put_if_leader: this participant has not won");
  auto request = detail::guarded_by(term->key.key, term->key.revision);
  auto* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(std::move(value));
  auto reply = co_await s->core->call("put_if_leader", s->core->kv().async(),
                                      &etcdserverpb::KV::Stub::async::Txn, std::move(request));
  if (!reply.succeeded())
    throw_error(errc::not_leader, "put_if_leader " + key + ": etcd refused the write, leader key " +
                                      term->key.key + " at revision " +
                                      std::to_string(term->key.revision) + " no longer exists");
  co_return reply.header().revision();
}

asio::awaitable<std::optional<LeaderInfo>> Participant::leader() {
  auto s = state_;
  v3electionpb::LeaderRequest request;
  request.set_name(s->election);
  v3electionpb::LeaderResponse reply;
  try {
    reply = co_await s->core->call_retrying("leader", s->core->election().async(),
                                            &v3electionpb::Election::Stub::async::Leader,
                                            std::move(request));
  } catch (const system_error& e) {
    if (e.code() != errc::no_leader) throw;
    reply.Clear();
  }
  if (!reply.has_kv()) co_return std::nullopt;
  const auto& kv = reply.kv();
  co_return LeaderInfo{kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.lease()};
}

Observer Participant::observe() { return Observer(*state_->client, state_->election); }

}  // namespace election
