// election::Mutex: a Participant whose value is empty, and its try (a campaign that does not
// wait in line); lock_loop(): a Leadership of such participants.
#include "election/mutex.hpp"

#include "api/access.hpp"
#include "api/launch.hpp"
#include "api/participant_state.hpp"

namespace election {

namespace asio = boost::asio;

Mutex::Mutex(Client& client, std::string name, MutexOptions options)
    : participant_(client, std::move(name), std::string(), options) {}

Mutex::Mutex(Session& session, std::string name, MutexOptions options)
    : participant_(session, std::move(name), std::string(), options) {}

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
                        detail::Cancellation::with_effects);
}

void Mutex::start_try_lock(State s, Handler<LockKey> handler, diagnostics* diag) {
  if (!s) return detail::refuse_gone(std::move(handler), diag, "try_lock");
  auto executor = s->core->executor();
  detail::launch(executor, detail::campaign_of(std::move(s), true), std::move(handler), diag,
                 detail::Cancellation::with_effects);
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
