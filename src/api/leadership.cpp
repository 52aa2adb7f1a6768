#include "election/leadership.hpp"

#include "election/first_of.hpp"

#include "api/access.hpp"
#include "api/launch.hpp"
#include "api/leadership_record.hpp"
#include "api/participant_state.hpp"
#include "base/async_event.hpp"
#include "base/backoff.hpp"
#include "base/throw.hpp"
#include "base/time_source.hpp"
#include "lease/lease_state.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace election {

namespace asio = boost::asio;
using boost::system::error_code;
using boost::system::system_error;

namespace detail {

namespace {

using Time = TimeSource::time_point;

// What no retry cures: refused credentials, no permission, bad input, the client gone. What
// passes by itself and what merely ends a leadership are retried.
bool needs_a_person(const error_code& ec) {
  return !is_transient(ec) && !ends_leadership(ec) && ec != asio::error::operation_aborted;
}

bool cancelled_now(const asio::cancellation_state& state) {
  return state.cancelled() != asio::cancellation_type::none;
}

asio::awaitable<void> wait_until(BootTimer& timer, Time at) {
  timer.expires_at(at);
  co_await timer.async_wait(asio::use_awaitable);
}

}  // namespace

class LeadershipState : public std::enable_shared_from_this<LeadershipState> {
 public:
  LeadershipState(std::shared_ptr<ClientCore> core, Participant participant, Leadership::Work work,
                  LeadershipOptions options, LeadershipHooks hooks,
                  std::chrono::milliseconds stale_after)
      : core(std::move(core)),
        participant(std::move(participant)),
        work(std::move(work)),
        options(options),
        record(this->core->time(), std::move(hooks), stale_after, options.failing_for),
        stopping(this->core->executor()) {}

  // Called once, after construction: the hook holds only a weak reference.
  void attach() {
    access::on_in_line(participant, [weak = weak_from_this()] {
      auto self = weak.lock();
      if (!self) return;
      self->record.in_line();  // in line: campaigning works
      // The lease the key is in line with: another than the one acquired if that was lost
      // before the campaign entered the line (the campaign granted a new one).
      if (const auto lease = self->participant.lease_id())
        self->record.lease_in_use(*lease, self->participant.granted_ttl());
    });
  }

  // --- on the Client's executor ------------------------------------------------------------

  void request_stop(bool destroyed = false) {
    if (destroyed) gone = true;
    if (!stopping.is_set()) stopping.set();
  }

  Time now() const { return core->time().now(); }

  // Reports every leadership change. The Observer retries what passes by itself inside; what
  // it throws needs a person (or is the client closing), and ends run().
  asio::awaitable<void> observe() {
    Observer observer = participant.observe();
    asio::steady_timer pause(core->executor());
    Backoff backoff(options.retry_initial, options.retry_max);
    for (;;) {
      std::optional<LeaderEvent> event;
      try {
        event = co_await observer.next();
      } catch (const system_error& e) {
        if (e.code() == asio::error::operation_aborted || needs_a_person(e.code())) throw;
      }
      if (!event) {
        pause.expires_after(backoff.next());
        co_await pause.async_wait(asio::use_awaitable);
        continue;
      }
      backoff.reset();
      record.observed(*event);
    }
  }

  // The work, spawned on its own so that its end and the leadership's can be waited for apart.
  asio::awaitable<void> run_work(LeaderKey key, std::shared_ptr<std::optional<std::string>> failure,
                                 std::shared_ptr<bool> cancelled) {
    try {
      co_await work(participant, key);
    } catch (const system_error& e) {
      // Its cancellation, once the leadership ended, is how it should stop.
      if (!(*cancelled && e.code() == asio::error::operation_aborted)) *failure = e.what();
    } catch (const std::exception& e) {
      *failure = e.what();
    } catch (...) {
      *failure = "an exception that is not a std::exception";
    }
  }

  // When another candidate could lead, at the earliest, after this participant's term ended
  // with `why` (LeadershipLost::work_stopped_in_time, LeadershipHooks::work_overran). A key
  // removed already (deleted, its lease gone, resigned by the work itself, unsigned) lets the
  // next candidate in once it has waited the takeover delay from the moment it saw that, at
  // about the moment this process did. A key kept while the work stops
  // (ParticipantState::term_ended) goes when the work has stopped, unsigned, so the next
  // candidate waits the delay after that; at the latest at kept_until, when etcd could have
  // expired it anyway: the limit. Never later than the lease's expiry.
  Time limit_for(const error_code& why, const std::shared_ptr<LeaseState>& lease,
                 const ParticipantState& state) const {
    auto limit = lease ? LeadershipRecord::expiry(*lease) : now();
    if (state.kept_until) limit = std::min(limit, *state.kept_until);
    if (why == errc::key_deleted || why == errc::lease_expired || why == errc::lease_revoked ||
        why == errc::resigned)
      limit = std::min(
          limit, now() + participant.takeover_delay().value_or(std::chrono::milliseconds(0)));
    return limit;
  }

  // One leadership: the work runs until the leadership ends (or the work does, or the loop is
  // stopped), then the work is stopped and waited for, and the loss reported. A signature (the
  // next candidate leads without the takeover delay) is written only once the work has stopped
  // while the term still led: when the work returned, or after a stop (run() resigns then).
  // A term that ends otherwise has its key kept until the work has stopped, and removed
  // unsigned then (ParticipantState::term_ended); a work that is still running when another
  // candidate could lead is reported (work_overran).
  //
  // A stop (a cancellation of run()) that comes meanwhile is noted, not obeyed, until the work
  // has stopped; lead() then throws it. Noting it means a fresh cancellation state, so that the
  // clean-up's waits are not cut short by the cancellation already delivered (each is
  // delivered once). Inline, not in a helper coroutine: co_await of an awaitable throws at once
  // while the state is cancelled.
  asio::awaitable<void> lead(const LeaderKey& key) {
    auto executor = co_await asio::this_coro::executor;
    const auto lease = access::participant_lease(participant);
    const auto state = access::participant_state(participant);
    record.won(key, lease);

    auto done = std::make_shared<AsyncEvent>(executor);
    auto cancel = std::make_shared<asio::cancellation_signal>();
    auto failure = std::make_shared<std::optional<std::string>>();
    auto cancelled = std::make_shared<bool>(false);
    // While the work runs, a resign() (the work's own) is no word that it has stopped.
    ++state->working;
    asio::co_spawn(executor, run_work(key, failure, cancelled),
                   asio::bind_cancellation_slot(cancel->slot(),
                                                [done, cancel, state](std::exception_ptr) {
                                                  --state->working;
                                                  done->set();
                                                }));

    LeadershipLost lost{key, {}, {}, {}, true};
    bool stopped = false;
    std::optional<error_code> ended;  // how the term ended, once it has
    try {
      auto first = co_await first_of(done->wait(), participant.keep_alive());
      if (first.index() == 1) ended = std::get<1>(first);
    } catch (const system_error&) {
      stopped = true;
    }
    if (cancelled_now(co_await asio::this_coro::cancellation_state)) stopped = true;
    if (stopped) co_await asio::this_coro::reset_cancellation_state();
    lost.deadline = participant.deadline();

    if (done->is_set() && !ended) {
      // The work returned or threw while leading: that ends the leadership.
      lost.reason = *failure ? errc::work_failed : errc::work_finished;
      if (*failure) lost.message = **failure;
      // Reported before the resign: the work has stopped, and once the key is gone another
      // candidate may lead at once (the resignation is signed), before the resign's answer is
      // back here. Reported after it, this loop's `lost` could follow the next leader's
      // `elected`, an overlap in every log and dashboard built on the hooks.
      record.term_over(lost);
      if (!stopped) {  // else run() resigns
        bool cut = false;
        try {
          co_await participant.resign();
        } catch (const system_error& e) {
          // The revocation goes on in the background; the next campaign has a new lease.
          cut = e.code() == asio::error::operation_aborted;
        }
        if (cut) stopped = true;
      }
      if (stopped) throw system_error(asio::error::operation_aborted);
      co_return;
    }

    // The term ended, or the loop was stopped while it led: the work is cancelled and waited
    // for. After a stop the term goes on, its key held and renewed, until the work has stopped
    // (or the term ends meanwhile): no overrun can be reported while nobody else could lead.
    std::optional<Time> limit;
    const auto term_ended = [&](const error_code& why) {
      lost.reason = why;
      lost.deadline = participant.deadline();
      limit = limit_for(why, lease, *state);
      record.leadership_ended(*limit);
    };
    if (ended) term_ended(*ended);
    *cancelled = true;
    cancel->emit(asio::cancellation_type::terminal);
    std::optional<BootTimer> timer;  // made only for a work that outlives the term's end
    bool late = false;
    while (!done->is_set()) {
      try {
        if (!limit) {
          auto first = co_await first_of(done->wait(), participant.keep_alive());
          if (first.index() == 1) term_ended(std::get<1>(first));
        } else if (!late) {
          if (!timer) timer.emplace(executor, core->time());
          auto first = co_await first_of(done->wait(), wait_until(*timer, *limit));
          if (first.index() == 1) {
            late = true;
            lost.work_stopped_in_time = false;
            record.work_overran(key);
          }
        } else {
          co_await done->wait();
        }
      } catch (const system_error&) {
        stopped = true;
      }
      if (cancelled_now(co_await asio::this_coro::cancellation_state)) stopped = true;
      if (stopped) co_await asio::this_coro::reset_cancellation_state();
    }
    if (!lost.reason) lost.reason = asio::error::operation_aborted;  // stopped while leading
    record.term_over(lost);
    // A term that ended without its owner's say: its key was kept while the work ran, and goes
    // now, unsigned. (After a stop, run() resigns: signed if the term still leads.)
    if (limit && !stopped) {
      try {
        co_await participant.resign();
      } catch (const system_error& e) {
        if (e.code() == asio::error::operation_aborted) stopped = true;
      }
    }
    if (stopped) throw system_error(asio::error::operation_aborted);
  }

  asio::awaitable<void> campaign_loop() {
    asio::steady_timer pause(core->executor());
    Backoff backoff(options.retry_initial, options.retry_max);
    for (;;) {
      std::optional<LeaderKey> won;
      std::exception_ptr failed;
      error_code code;
      std::string message;
      record.campaigning();
      try {
        const auto lease = co_await participant.acquire_lease();
        record.lease_in_use(lease, participant.granted_ttl());
        won = co_await participant.campaign();
      } catch (const std::exception&) {
        failed = std::current_exception();
        diagnostics diag;
        code = to_error(failed, &diag);
        message = diag.message();
      }
      record.campaign_over();
      if (code == asio::error::operation_aborted || (failed && needs_a_person(code)))
        std::rethrow_exception(failed);
      if (won) {
        backoff.reset();
        co_await lead(*won);
      }
      const auto delay = backoff.next();
      if (failed) record.retrying(code, message, delay);
      pause.expires_after(delay);
      co_await pause.async_wait(asio::use_awaitable);
    }
  }

  asio::awaitable<void> run() {
    if (gone) throw_error(errc::object_gone, "leadership run: the Leadership was destroyed");
    if (running) throw_error(errc::invalid_argument, "leadership: run() is already running");
    running = true;
    std::exception_ptr failure;
    bool stopped = false;
    try {
      auto ended = co_await first_of(first_of(campaign_loop(), observe()), stopping.wait());
      stopped = ended.index() == 1;
    } catch (...) {
      failure = std::current_exception();
    }
    // However it ended, the work has stopped (lead() waited for it). Give the leadership up
    // with fresh deadlines, also when this coroutine was cancelled.
    bool cancelled = false;
    if (cancelled_now(co_await asio::this_coro::cancellation_state)) cancelled = true;
    if (cancelled) co_await asio::this_coro::reset_cancellation_state();
    std::exception_ptr resign_failure;
    try {
      co_await participant.resign();
    } catch (...) {
      resign_failure = std::current_exception();
    }
    running = false;
    record.stopped();
    if (!stopped && failure) {
      if (cancelled) throw system_error(asio::error::operation_aborted);
      std::rethrow_exception(failure);
    }
    if (resign_failure) std::rethrow_exception(resign_failure);
  }

  std::shared_ptr<ClientCore> core;
  Participant participant;
  Leadership::Work work;
  const LeadershipOptions options;
  LeadershipRecord record;  // hooks, metrics, health
  AsyncEvent stopping;
  bool running = false;
  bool gone = false;  // the Leadership was destroyed: run() after that fails with object_gone
};

namespace {

// Checks a Leadership's options; returns its renewal_stale_after. `ttl` is the lease's.
std::chrono::milliseconds checked(const Leadership::Work& work, const LeadershipOptions& options,
                                  std::chrono::seconds lease_ttl) {
  using std::chrono::milliseconds;
  const auto ms = [](milliseconds d) { return std::to_string(d.count()) + " ms"; };
  if (!work) throw_error(errc::invalid_argument, "leadership: no work given");
  if (options.retry_initial.count() <= 0 || options.retry_max < options.retry_initial)
    throw_error(errc::invalid_argument,
                "leadership: retry_initial must be positive and at most retry_max (got " +
                    ms(options.retry_initial) + " and " + ms(options.retry_max) + ")");
  const auto ttl = std::chrono::duration_cast<milliseconds>(lease_ttl);
  const auto stale = options.renewal_stale_after.value_or(ttl);
  if (stale < ttl)
    throw_error(errc::invalid_argument, "leadership: renewal_stale_after of " + ms(stale) +
                                            " is under the TTL of " + ms(ttl) +
                                            ": a keep-alive that works would be called wedged");
  if (options.failing_for.count() <= 0)
    throw_error(errc::invalid_argument,
                "leadership: failing_for must be positive (got " + ms(options.failing_for) + ")");
  return stale;
}

}  // namespace

}  // namespace detail

Leadership::Leadership(Client& client, std::string election, std::string value, Work work,
                       LeadershipOptions options, LeadershipHooks hooks) {
  const auto stale = detail::checked(work, options, options.participant.ttl);
  Participant participant(client, std::move(election), std::move(value), options.participant);
  state_ = std::make_shared<detail::LeadershipState>(detail::access::core(client),
                                                     std::move(participant), std::move(work),
                                                     options, std::move(hooks), stale);
  state_->attach();
}

Leadership::Leadership(Session& session, std::string election, std::string value, Work work,
                       LeadershipOptions options, LeadershipHooks hooks) {
  const auto stale = detail::checked(work, options, detail::access::session_options(session).ttl);
  Participant participant(session, std::move(election), std::move(value), options.participant);
  state_ = std::make_shared<detail::LeadershipState>(detail::access::session_core(session),
                                                     std::move(participant), std::move(work),
                                                     options, std::move(hooks), stale);
  state_->attach();
}

Leadership::Leadership(Leadership&&) noexcept = default;
Leadership& Leadership::operator=(Leadership&& other) noexcept {
  if (this != &other) {
    if (state_) stop();
    state_ = std::move(other.state_);
  }
  return *this;
}

Leadership::~Leadership() {
  if (!state_) return;
  asio::post(state_->core->executor(), [weak = std::weak_ptr<detail::LeadershipState>(state_)] {
    if (auto s = weak.lock()) s->request_stop(true);
  });
}

const std::string& Leadership::election() const { return state_->participant.election(); }

namespace detail {
namespace {

// The loop, holding its state: the Leadership may go meanwhile (which stops it).
asio::awaitable<void> run_of(std::shared_ptr<LeadershipState> s) { co_await s->run(); }

}  // namespace
}  // namespace detail

asio::awaitable<void> Leadership::run() {
  // On a coroutine of its own: its clean-up resets that coroutine's cancellation state, which
  // must not be the caller's. The caller's cancellation reaches it through co_spawn.
  if (!state_) throw_error(errc::object_gone, "leadership run: the Leadership was moved from");
  return detail::run_on(state_->core->executor(), detail::run_of(state_),
                        detail::Cancellation::with_effects);
}

void Leadership::start_run(std::shared_ptr<detail::LeadershipState> s,
                           asio::any_completion_handler<void(error_code)> handler,
                           diagnostics* diag) {
  if (!s) return detail::refuse_gone(std::move(handler), diag, "leadership run");
  auto executor = s->core->executor();
  detail::launch(executor, detail::run_of(std::move(s)), std::move(handler), diag,
                 detail::Cancellation::with_effects);
}

void Leadership::stop() {
  if (!state_) return;
  asio::post(state_->core->executor(), [weak = std::weak_ptr<detail::LeadershipState>(state_)] {
    if (auto s = weak.lock()) s->request_stop();
  });
}

std::function<std::optional<std::pair<LeadershipMetrics, Health>>()>
detail::access::leadership_probe(const Leadership& leadership) {
  return [weak = std::weak_ptr<LeadershipState>(
              leadership.state_)]() -> std::optional<std::pair<LeadershipMetrics, Health>> {
    if (auto s = weak.lock()) return std::pair{s->record.snapshot(), s->record.health()};
    return std::nullopt;
  };
}

Health Leadership::health() const { return state_->record.health(); }
LeadershipMetrics Leadership::metrics() const { return state_->record.snapshot(); }
const Participant& Leadership::participant() const { return state_->participant; }

}  // namespace election
