// The definitions of work.hpp: the leader's tick, and the fenced write each tick makes, given up
// on when no answer comes before the lease's local deadline; and the work's stop, which
// --stop-latency delays past its cancellation.
#include "work.hpp"

#include "common/json_line.hpp"

#include <election/error.hpp>
#include <election/first_of.hpp>

#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <string>
#include <variant>

namespace leader_worker {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using boost::system::system_error;
using election::errc;

election::Leadership::Work CounterWork::work() {
  return [this](election::Participant& me, const election::LeaderKey& key) {
    return work_loop(me, key);
  };
}

// The leadership's end cancels the work (the Leadership emits its cancellation, and waits for the
// work to stop before it reports `lost`). Told so, this work says `work-cancelled` at once (the
// node no longer believes it leads), then runs on for --stop-latency ms, as a work in the midst
// of an operation it cannot cut short would, and says `work-stopped` just before it ends.
// The wait is not cut short: the coroutine's cancellation state, cancelled by then (which makes
// every co_await throw at once), is replaced inline (not in a helper coroutine: README, "Notes for
// contributors") by one that lets no cancellation through. The wait is outside the catch block,
// where co_await is not allowed.
asio::awaitable<void> CounterWork::work_loop(election::Participant& me, election::LeaderKey key) {
  auto executor = co_await asio::this_coro::executor;
  std::exception_ptr failure;
  try {
    co_await write_loop(me, key);
  } catch (...) {
    failure = std::current_exception();
  }
  const auto state = co_await asio::this_coro::cancellation_state;
  const bool cancelled = state.cancelled() != asio::cancellation_type::none;
  const auto rev = key.create_revision;
  if (cancelled) {
    const auto latency = config_.stop_latency_ms;
    events_.emit("work-cancelled", {{"rev", rev}, {"stop_latency_ms", latency}},
                 "work: cancelled, the leadership at revision " + std::to_string(rev) +
                     " has ended" +
                     (latency > 0 ? "; stopping in " + std::to_string(latency) + " ms" : ""));
    if (latency > 0) {
      co_await asio::this_coro::reset_cancellation_state(asio::disable_cancellation());
      asio::steady_timer linger(executor, std::chrono::milliseconds(latency));
      error_code ignored;
      co_await linger.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
  }
  const char* how = cancelled ? "cancelled" : failure ? "failed" : "returned";
  events_.emit("work-stopped", {{"rev", rev}, {"how", how}},
               "work: stopped (" + std::string(how) + "), the leadership at revision " +
                   std::to_string(rev));
  if (failure) std::rethrow_exception(failure);
}

asio::awaitable<void> CounterWork::write_loop(election::Participant& me,
                                              const election::LeaderKey& key) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer tick(executor);
  asio::steady_timer limit(executor);
  auto next = Clock::now();
  int writes = 0;
  for (;;) {
    if (config_.lock_writes && writes == *config_.lock_writes) co_return;  // releases the lock
    tick.expires_at(next);
    co_await tick.async_wait(asio::use_awaitable);
    next = std::max(next + 1s, Clock::now());
    // Past the local deadline the term is over even if the loop has not said so yet.
    const auto deadline = me.deadline();
    if (!me.is_leader() || !deadline) continue;
    ++writes;

    const auto seq = ++seq_;
    // The value names its writer and the fence it is written under, so etcd's history alone
    // says who wrote what under which leadership.
    const auto value = example_common::json_line(
        {{"node", config_.node}, {"seq", seq}, {"fence", key.create_revision}});
    std::int64_t revision = 0;
    std::string failure;
    // An answer after the deadline would come from a node that no longer counts as leader:
    // such a write is given up on (etcd may still have applied it, fenced: before the end).
    limit.expires_at(on_monotonic(*deadline));
    try {
      auto written = co_await election::first_of(me.put_if_leader(counter_key_, value),
                                                 limit.async_wait(asio::use_awaitable));
      if (written.index() == 0)
        revision = std::get<0>(written);
      else
        failure = "no answer before the lease's local deadline";
    } catch (const system_error& e) {
      if (e.code() == asio::error::operation_aborted) throw;
      failure = e.code() == errc::not_leader ? "etcd refused the fenced write: not the leader"
                                             : describe(e);
    }
    Fields fields{
        {"rev", revision}, {"seq", seq}, {"ok", failure.empty()}, {"fence", key.create_revision}};
    if (!failure.empty()) fields["error"] = failure;
    events_.emit("work", fields,
                 failure.empty() ? "work: wrote " + counter_key_ + " = " + value + " (revision " +
                                       std::to_string(revision) + ")"
                                 : "work: write " + std::to_string(seq) + " failed: " + failure);
  }
}

}  // namespace leader_worker
