// election::Mutex: a Participant whose value is empty, and its try (a campaign that does not
// wait in line); lock_loop(): a Leadership of such participants.
#include "election/mutex.hpp"

#include "api/access.hpp"
#include "api/launch.hpp"
#include "api/participant_state.hpp"
#include "engine/election_feed.hpp"

#include <boost/asio/dispatch.hpp>

namespace election {

namespace asio = boost::asio;

namespace detail {

// Listens to nothing: its subscription keeps the lock's feed running.
struct LockFollower final : FeedListener {
  std::shared_ptr<ElectionFeed> feed;
};

namespace {

std::shared_ptr<LockFollower> follow(const std::shared_ptr<ParticipantState>& s) {
  auto follower = std::make_shared<LockFollower>();
  follower->feed = ElectionFeed::of(s->core, s->election);
  asio::dispatch(s->core->executor(), [follower] { follower->feed->subscribe(follower.get()); });
  return follower;
}

void unfollow(const std::shared_ptr<ParticipantState>& s, std::shared_ptr<LockFollower> follower) {
  if (!s || !follower) return;
  asio::dispatch(s->core->executor(),
                 [follower = std::move(follower)] { follower->feed->unsubscribe(follower.get()); });
}

}  // namespace
}  // namespace detail

Mutex::Mutex(Client& client, std::string name, MutexOptions options)
    : participant_(client, std::move(name), std::string(), options),
      follower_(detail::follow(state())) {}

Mutex::Mutex(Session& session, std::string name, MutexOptions options)
    : participant_(session, std::move(name), std::string(), options),
      follower_(detail::follow(state())) {}

Mutex::Mutex(Mutex&&) noexcept = default;

Mutex& Mutex::operator=(Mutex&& other) noexcept {
  if (this != &other) {
    detail::unfollow(state(), std::move(follower_));
    participant_ = std::move(other.participant_);
    follower_ = std::move(other.follower_);
  }
  return *this;
}

Mutex::~Mutex() { detail::unfollow(state(), std::move(follower_)); }

Mutex::State Mutex::state() const { return detail::access::participant_state(participant_); }

std::optional<std::int64_t> Mutex::fencing_revision() const {
  if (auto k = participant_.leader_key()) return k->create_revision;
  return std::nullopt;
}

asio::awaitable<LockKey> Mutex::try_lock() {
  auto s = state();
  if (!s) throw_error(errc::object_gone, "try_lock: the Mutex was moved from");
  auto executor = s->core->executor();
  return detail::run_on(executor, detail::campaign_of(std::move(s), true),
                        detail::Cancellation::set_by_op);
}

void Mutex::start_try_lock(State s, Handler<LockKey> handler, diagnostics* diag) {
  if (!s) return detail::refuse_gone(std::move(handler), diag, "try_lock");
  auto executor = s->core->executor();
  detail::launch(executor, detail::campaign_of(std::move(s), true), std::move(handler), diag,
                 detail::Cancellation::set_by_op);
}

Leadership lock_loop(Client& client, std::string name, Leadership::Work work,
                     LeadershipOptions options, LeadershipHooks hooks) {
  return Leadership(client, std::move(name), std::string(), std::move(work), options,
                    std::move(hooks));
}

Leadership lock_loop(Session& session, std::string name, Leadership::Work work,
                     LeadershipOptions options, LeadershipHooks hooks) {
  return Leadership(session, std::move(name), std::string(), std::move(work), options,
                    std::move(hooks));
}

}  // namespace election
