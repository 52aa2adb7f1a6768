// A participant's campaign and its end: campaign(), acquire_lease(), keep_alive(), resign(),
// and the takeover delay chosen from etcd's version.
#include "api/participant_state.hpp"

#include "election/first_of.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <charconv>
#include <tuple>

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

namespace {

// Gives etcd `patience` to confirm a failed campaign's withdrawal. Its own coroutine: its locals
// are not in the frame of every campaign waiting in line.
asio::awaitable<void> await_withdrawal(std::shared_ptr<ClientCore> core,
                                       std::shared_ptr<Withdrawal> withdrawal,
                                       std::chrono::milliseconds patience) {
  asio::steady_timer limit(core->executor(), patience);
  try {
    co_await first_of(withdrawal->done.wait(), limit.async_wait(asio::use_awaitable));
  } catch (const system_error&) {
  }
}

}  // namespace

// The operations, on the participant's state: an operation in flight holds it, so the
// Participant may go meanwhile.
asio::awaitable<LeaderKey> campaign_of(std::shared_ptr<ParticipantState> s, bool only_if_first) {
  // Launched with Cancellation::set_by_op: the filter of an operation with effects.
  co_await asio::this_coro::reset_cancellation_state(asio::enable_partial_cancellation());
  s->check_live("campaign");
  if (s->campaign)
    throw_error(errc::invalid_argument,
                "campaign: another campaign() of this participant is in progress");
  if (s->term && !s->term->ended())
    throw_error(errc::invalid_argument,
                "campaign: this participant already leads (resign() first)");
  if (s->acquiring) throw_error(errc::invalid_argument, "campaign: acquire_lease() is in progress");
  // The last term's key, kept while its work stopped (ParticipantState::term_ended): its owner
  // campaigns again, so that work is over; the key goes first, unsigned.
  if (s->kept) s->withdraw();
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
    // However the campaign ends here, its turn to enter is given on (if it still has it).
    struct GiveTurnOn {
      CampaignRun& run;
      ~GiveTurnOn() { run.entering.reset(); }
    } give_on{*run};
    try {
      // Nothing of the way into line is built before this campaign's turn: a stop or the
      // caller's cancellation (through `cut`) ends the wait.
      run->entering = co_await s->core->entry_gate().acquire(run->cut.slot());
      if (run->stopped) throw system_error(run->reason, run->message);
      result = co_await asio::co_spawn(
          s->core->executor(), s->run(run, only_if_first),
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
    s->start_term(*result);
    result->feed.reset();  // the term follows the election with the campaign's watch
    co_return result->key;
  } catch (...) {
    failure = std::current_exception();
  }
  // However the campaign ended, its lease goes, and the key with it: started here, before any
  // co_await, so a cancelled campaign withdraws all the same.
  if (s->campaign == run) s->campaign.reset();
  if (auto withdrawal = s->withdraw(); withdrawal && !withdrawal->finished()) {
    // Give etcd a moment to confirm, so that the key is usually gone when campaign() throws;
    // the revocation goes on in the background if not. A try (try_lock) waits until etcd has
    // confirmed, within the request timeout: its caller is told the key left the queue. A
    // cancelled coroutine's co_await throws at once, so that is switched off for this wait
    // only (the caller's cancellation state itself is left as it is).
    const auto patience =
        only_if_first ? s->core->options().request_timeout : s->core->attempt_timeout();
    const bool throws = co_await asio::this_coro::throw_if_cancelled();
    co_await asio::this_coro::throw_if_cancelled(false);
    co_await await_withdrawal(s->core, std::move(withdrawal), patience);
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
  // Signed only when its owner ends a term that still leads, with no Leadership work of it
  // running (ParticipantState::chosen_end).
  const bool chosen = s->chosen_end();
  // The leader stops believing it leads, and its lease stops being renewed, before anything is
  // sent: whatever becomes of this call, nothing acts on the old leadership from here on.
  if (s->term) s->term->end(errc::resigned);
  auto withdrawal = s->withdraw(chosen);
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

}  // namespace detail
}  // namespace election
