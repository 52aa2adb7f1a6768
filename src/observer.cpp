#include "election/observer.hpp"

#include "election/detail/backoff.hpp"
#include "election/detail/leader_tracker.hpp"
#include "kv.hpp"
#include "watch.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <deque>

namespace election {
namespace detail {

namespace asio = boost::asio;

class ObserverState {
 public:
  ObserverState(std::shared_ptr<ClientCore> core, std::string election)
      : core(std::move(core)), election(std::move(election)), prefix(this->election + "/") {}

  // Reads every candidate and starts watching from the revision after that read. While etcd
  // cannot be reached the read is retried with backoff, as the watch itself is.
  asio::awaitable<void> sync() {
    etcdserverpb::RangeResponse reply;
    for (asio::steady_timer timer(core->executor());;) {
      boost::system::error_code failed;
      try {
        reply = co_await range(*core, prefix, prefix_end(prefix));
      } catch (const boost::system::system_error& e) {
        failed = e.code();
        const bool transient = failed == errc::unreachable || failed == errc::timeout ||
                               (failed.category() == grpc_category() &&
                                failed.value() == static_cast<int>(grpc::StatusCode::UNAVAILABLE));
        if (!transient) throw;
      }
      if (!failed) break;
      timer.expires_after(backoff.next());
      co_await timer.async_wait(asio::use_awaitable);
    }
    backoff.reset();
    std::vector<LeaderInfo> candidates;
    for (const auto& kv : reply.kvs()) candidates.push_back(to_info(kv));
    const auto revision = reply.header().revision();
    if (auto event = tracker.reset(std::move(candidates), revision)) pending.push_back(*event);
    watch.emplace(core, prefix, prefix_end(prefix), revision + 1);
  }

  static LeaderInfo to_info(const mvccpb::KeyValue& kv) {
    return {kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.lease()};
  }

  std::shared_ptr<ClientCore> core;
  std::string election;
  std::string prefix;
  LeaderTracker tracker;
  std::optional<KeyWatch> watch;
  std::deque<LeaderEvent> pending;
  Backoff backoff{std::chrono::milliseconds(100), std::chrono::seconds(2)};
};

}  // namespace detail

Observer::Observer(Client& client, std::string election) {
  detail::check_election_name(election);
  state_ = std::make_unique<detail::ObserverState>(client.core(), std::move(election));
}
Observer::Observer(Observer&&) noexcept = default;
Observer& Observer::operator=(Observer&&) noexcept = default;
Observer::~Observer() = default;

const std::string& Observer::election() const { return state_->election; }

boost::asio::awaitable<LeaderEvent> Observer::next() {
  auto& s = *state_;
  while (s.pending.empty()) {
    if (!s.watch) {
      co_await s.sync();
      continue;
    }
    try {
      auto batch = co_await s.watch->next();
      for (const auto& event : batch.events) {
        const auto revision = event.kv().mod_revision();
        auto change = event.type() == mvccpb::Event::DELETE
                          ? s.tracker.erase(event.kv().key(), revision)
                          : s.tracker.put(detail::ObserverState::to_info(event.kv()), revision);
        if (change) s.pending.push_back(std::move(*change));
      }
    } catch (const boost::system::system_error& e) {
      if (e.code() != errc::compacted) throw;
      s.watch.reset();  // re-read; the tracker reports only a leader that differs
    }
  }
  auto event = std::move(s.pending.front());
  s.pending.pop_front();
  co_return event;
}

}  // namespace election
