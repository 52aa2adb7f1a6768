// The definitions of work.hpp: the leader's tick, and the fenced write each tick makes, given up
// on when no answer comes before the lease's local deadline.
#include "work.hpp"

#include "common/json_line.hpp"

#include <election/error.hpp>
#include <election/first_of.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <chrono>
#include <variant>

namespace leader_worker {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::system_error;
using election::errc;

election::Leadership::Work CounterWork::work() {
  return [this](election::Participant& me, const election::LeaderKey& key) {
    return work_loop(me, key);
  };
}

asio::awaitable<void> CounterWork::work_loop(election::Participant& me, election::LeaderKey key) {
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
