#include "election/observer.hpp"

#include "election/detail/backoff.hpp"
#include "election/detail/leader_tracker.hpp"
#include "kv.hpp"
#include "watch.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <deque>
#include <vector>

namespace election {
namespace detail {

namespace asio = boost::asio;

/// One Observer's queue of events not yet taken by next().
class ObserverState {
 public:
  ObserverState(asio::any_io_executor executor, std::string election)
      : election(std::move(election)), wake(std::move(executor)) {}

  void deliver(const LeaderEvent& event) {
    pending.push_back(event);
    wake.cancel();
  }

  void fail(std::exception_ptr e) {
    failure = std::move(e);
    wake.cancel();
  }

  std::string election;
  std::shared_ptr<ClientCore> core;  // until the first next() subscribes to the feed
  std::shared_ptr<ElectionFeed> feed;
  std::deque<LeaderEvent> pending;
  std::exception_ptr failure;
  asio::steady_timer wake;  // never expires: cancelled to wake the waiting next()
};

/// The leadership changes of one election, followed with one watch of its prefix and shared by
/// every Observer of that election on one Client: etcd sends each change once, however many
/// Observers there are, and the fan-out to them costs a queue push each, not a gRPC stream.
///
/// The watch starts after a read of every candidate; after a broken stream it resumes from the
/// revision after the last event (KeyWatch), and after a compaction the election is read again
/// and only a leader that differs from the last one reported is passed on. Runs while it has
/// subscribers; the last one leaving stops the watch.
class ElectionFeed : public std::enable_shared_from_this<ElectionFeed> {
 public:
  ElectionFeed(std::shared_ptr<ClientCore> core, std::string election)
      : core_(std::move(core)), election_(std::move(election)), prefix_(election_ + "/") {}

  static std::shared_ptr<ElectionFeed> of(const std::shared_ptr<ClientCore>& core,
                                          const std::string& election) {
    auto& feeds = core->election_feeds;
    if (feeds.size() > 64) std::erase_if(feeds, [](const auto& f) { return f.second.expired(); });
    auto& slot = feeds[election];
    auto feed = slot.lock();
    if (!feed || feed->failure_) {
      feed = std::make_shared<ElectionFeed>(core, election);
      slot = feed;
    }
    return feed;
  }

  void subscribe(const std::shared_ptr<ObserverState>& observer) {
    subscribers_.push_back(observer);
    // A late subscriber starts from the state now, as every Observer does.
    if (reported_) observer->deliver(*reported_);
    if (!running_) start();
  }

  void unsubscribe(const ObserverState* observer) {
    std::erase_if(subscribers_, [&](const std::weak_ptr<ObserverState>& w) {
      auto s = w.lock();
      return !s || s.get() == observer;
    });
    if (subscribers_.empty() && running_) stop_->emit(asio::cancellation_type::terminal);
  }

 private:
  void start() {
    running_ = true;
    // A signal per run: the one a finished run was bound to stays alive with its handler.
    stop_ = std::make_shared<asio::cancellation_signal>();
    asio::co_spawn(
        core_->executor(), pump(shared_from_this()),
        asio::bind_cancellation_slot(stop_->slot(), [stop = stop_](std::exception_ptr) {}));
  }

  void publish(const LeaderEvent& event) {
    reported_ = event;
    for (auto& w : subscribers_)
      if (auto s = w.lock()) s->deliver(event);
  }

  // Reads every candidate, then watches from the revision after that read. While etcd cannot be
  // reached the read is retried with backoff, as the watch itself is.
  asio::awaitable<void> sync() {
    etcdserverpb::RangeResponse reply;
    for (asio::steady_timer timer(core_->executor());;) {
      boost::system::error_code failed;
      try {
        reply = co_await range(*core_, prefix_, prefix_end(prefix_));
      } catch (const boost::system::system_error& e) {
        failed = e.code();
        const bool transient = failed == errc::unreachable || failed == errc::timeout ||
                               (failed.category() == grpc_category() &&
                                failed.value() == static_cast<int>(grpc::StatusCode::UNAVAILABLE));
        if (!transient) throw;
      }
      if (!failed) break;
      timer.expires_after(backoff_.next());
      co_await timer.async_wait(asio::use_awaitable);
    }
    backoff_.reset();
    std::vector<LeaderInfo> candidates;
    for (const auto& kv : reply.kvs()) candidates.push_back(to_info(kv));
    const auto revision = reply.header().revision();
    if (auto event = tracker_.reset(std::move(candidates), revision)) publish(*event);
    watch_.emplace(core_, prefix_, prefix_end(prefix_), revision + 1);
  }

  static asio::awaitable<void> pump(std::shared_ptr<ElectionFeed> self) {
    try {
      for (;;) {
        if (!self->watch_) {
          co_await self->sync();
          continue;
        }
        try {
          auto batch = co_await self->watch_->next();
          for (const auto& event : batch.events) {
            const auto revision = event.kv().mod_revision();
            auto change = event.type() == mvccpb::Event::DELETE
                              ? self->tracker_.erase(event.kv().key(), revision)
                              : self->tracker_.put(to_info(event.kv()), revision);
            if (change) self->publish(*change);
          }
        } catch (const boost::system::system_error& e) {
          if (e.code() != errc::compacted) throw;
          self->watch_.reset();  // re-read; the tracker reports only a leader that differs
        }
      }
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted) {
        // The last subscriber left. A subscriber that came meanwhile restarts the feed.
        self->watch_.reset();
        self->running_ = false;
        if (!self->subscribers_.empty()) self->start();
        co_return;
      }
      self->fail(std::current_exception());
    } catch (...) {
      self->fail(std::current_exception());
    }
  }

  // Client closed, or etcd refused the watch (authentication, permission): every subscriber's
  // next() throws it; a new Observer gets a new feed.
  void fail(std::exception_ptr e) {
    failure_ = e;
    running_ = false;
    watch_.reset();
    for (auto& w : subscribers_)
      if (auto s = w.lock()) s->fail(e);
  }

  static LeaderInfo to_info(const mvccpb::KeyValue& kv) {
    return {kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.lease()};
  }

  std::shared_ptr<ClientCore> core_;
  std::string election_;
  std::string prefix_;
  std::vector<std::weak_ptr<ObserverState>> subscribers_;
  LeaderTracker tracker_;
  std::optional<LeaderEvent> reported_;
  std::optional<KeyWatch> watch_;
  Backoff backoff_{std::chrono::milliseconds(100), std::chrono::seconds(2)};
  std::shared_ptr<asio::cancellation_signal> stop_;
  bool running_ = false;
  std::exception_ptr failure_;
};

}  // namespace detail

Observer::Observer(Client& client, std::string election) {
  detail::check_election_name(election);
  const auto& core = client.core();
  state_ = std::make_shared<detail::ObserverState>(core->executor(), std::move(election));
  state_->core = core;
}

Observer::Observer(Observer&&) noexcept = default;

Observer& Observer::operator=(Observer&& other) noexcept {
  if (this != &other) {
    Observer gone(std::move(*this));
    state_ = std::move(other.state_);
  }
  return *this;
}

Observer::~Observer() {
  if (!state_) return;
  if (state_->feed) state_->feed->unsubscribe(state_.get());
  // A next() still waiting ends with operation_aborted.
  state_->fail(std::make_exception_ptr(boost::system::system_error(
      boost::asio::error::operation_aborted, "observer of " + state_->election + " destroyed")));
}

const std::string& Observer::election() const { return state_->election; }

boost::asio::awaitable<LeaderEvent> Observer::next() {
  auto s = state_;  // a wait outlives the Observer if it is destroyed meanwhile
  if (!s->feed) {
    // Observing begins with the first wait, which reports the state then.
    s->feed = detail::ElectionFeed::of(s->core, s->election);
    s->core.reset();
    s->feed->subscribe(s);
  }
  while (s->pending.empty()) {
    if (s->failure) std::rethrow_exception(s->failure);
    boost::system::error_code ec;
    s->wake.expires_at(boost::asio::steady_timer::time_point::max());
    co_await s->wake.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    // A cancelled wait (the caller's timer won a race) loses nothing: events stay queued.
    if (ec == boost::asio::error::operation_aborted && s->pending.empty() && !s->failure) {
      auto state = co_await boost::asio::this_coro::cancellation_state;
      if (state.cancelled() != boost::asio::cancellation_type::none)
        throw boost::system::system_error(boost::asio::error::operation_aborted, "observe");
    }
  }
  auto event = std::move(s->pending.front());
  s->pending.pop_front();
  co_return event;
}

}  // namespace election
