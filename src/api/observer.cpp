#include "election/observer.hpp"
#include "api/access.hpp"

#include "api/launch.hpp"
#include "base/notifier.hpp"
#include "engine/election_feed.hpp"
#include "transport/kv.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/this_coro.hpp>

#include <deque>

namespace election {
namespace detail {

namespace asio = boost::asio;

/// One Observer's events not yet taken by next(), fed by the election's feed.
class ObserverState : public FeedListener {
 public:
  ObserverState(std::shared_ptr<ClientCore> core, std::string election)
      : core(std::move(core)), election(std::move(election)), wake(this->core->executor()) {}

  ~ObserverState() override {
    if (feed) feed->unsubscribe(this);
    core->release_election(election);
  }

  void on_leader(const LeaderEvent& event) override {
    pending.push_back(event);
    wake.notify();
  }

  void on_failed(boost::system::error_code reason, const std::string& message) override {
    failure = {reason, message};
    wake.notify();
  }

  std::shared_ptr<ClientCore> core;
  std::string election;
  std::shared_ptr<ElectionFeed> feed;  // from the first next() on
  std::deque<LeaderEvent> pending;
  std::optional<std::pair<boost::system::error_code, std::string>> failure;
  Notifier wake;
  bool waiting = false;  // a next() is in progress
  bool closed = false;   // the Observer was destroyed
};

}  // namespace detail

namespace asio = boost::asio;

Observer::Observer(Client& client, std::string election)
    : Observer(detail::access::core(client), std::move(election)) {}

Observer::Observer(const std::shared_ptr<detail::ClientCore>& core, std::string election) {
  detail::check_election_name(election);
  core->claim_election(election);
  state_ = std::make_shared<detail::ObserverState>(core, std::move(election));
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
  // A next() still waiting ends with operation_aborted; the state goes with it. On the
  // Client's executor: at once from there, posted from another thread.
  auto executor = state_->core->executor();
  asio::dispatch(executor, [s = std::move(state_)] {
    s->closed = true;
    s->wake.notify();
  });
}

const std::string& Observer::election() const { return state_->election; }

std::optional<std::vector<LeaderInfo>> Observer::candidates() const {
  const auto& feed = state_->feed;
  if (!feed || !feed->synced()) return std::nullopt;
  return feed->view().line();
}

namespace detail {
namespace {

// On the observer's state: a wait outlives the Observer if it is destroyed meanwhile.
asio::awaitable<LeaderEvent> next_of(std::shared_ptr<ObserverState> s) {
  if (s->closed)
    throw_error(errc::object_gone, "observer of " + s->election + ": the Observer was destroyed");
  if (s->waiting)
    throw_error(errc::invalid_argument,
                "observer of " + s->election + ": next() is already waiting on this observer");
  if (!s->feed) {
    // Observing begins with the first wait, which reports the state then.
    s->feed = detail::ElectionFeed::of(s->core, s->election);
    s->feed->subscribe(s.get());
    if (s->feed->synced() && s->feed->reported()) s->pending.push_back(*s->feed->reported());
  } else if (!s->failure && s->feed->failure()) {
    s->feed->resume();  // the failure was reported once; this wait tries again
  }
  struct Waiting {
    explicit Waiting(bool& flag) : flag(flag) { flag = true; }
    ~Waiting() { flag = false; }
    bool& flag;
  } waiting(s->waiting);
  for (;;) {
    if (s->closed)
      throw boost::system::system_error(asio::error::operation_aborted,
                                        "observer of " + s->election + " destroyed");
    if (!s->pending.empty()) {
      // A wait cut short (a timer won a race with first_of) takes nothing: the event stays
      // for the next call, even when it arrived at the same moment.
      auto cancellation = co_await asio::this_coro::cancellation_state;
      if (cancellation.cancelled() != asio::cancellation_type::none)
        throw boost::system::system_error(asio::error::operation_aborted, "observe");
      auto event = std::move(s->pending.front());
      s->pending.pop_front();
      co_return event;
    }
    if (s->failure) {
      // Reported once; the next call starts the feed again.
      auto [reason, message] = std::move(*s->failure);
      s->failure.reset();
      throw boost::system::system_error(reason, message);
    }
    co_await s->wake.wait();
  }
}

}  // namespace
}  // namespace detail

asio::awaitable<LeaderEvent> Observer::next() {
  if (!state_) throw_error(errc::object_gone, "observer next: the Observer was moved from");
  return detail::run_on(state_->core->executor(), detail::next_of(state_),
                        detail::Cancellation::without_effects);
}

void Observer::start_next(
    std::shared_ptr<detail::ObserverState> s,
    asio::any_completion_handler<void(boost::system::error_code, LeaderEvent)> handler,
    diagnostics* diag) {
  if (!s) return detail::refuse_gone(std::move(handler), diag, "observer next");
  auto executor = s->core->executor();
  detail::launch(executor, detail::next_of(std::move(s)), std::move(handler), diag,
                 detail::Cancellation::without_effects);
}

}  // namespace election
