// What a Session and the Participants made from it share. Private to the library.
#pragma once

#include "base/async_event.hpp"
#include "election/session.hpp"
#include "lease/lease_state.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/awaitable.hpp>

#include <exception>
#include <map>
#include <memory>
#include <set>
#include <string>

namespace election::detail {

class SessionState : public std::enable_shared_from_this<SessionState> {
 public:
  SessionState(std::shared_ptr<ClientCore> core, SessionOptions options)
      : core(std::move(core)), options(options) {}

  /// The live lease, granted first if there is none (or the last one was lost). Callers that
  /// come while a grant is in flight wait for that one. Throws as grant_lease, and
  /// errc::invalid_argument once the Session is gone.
  boost::asio::awaitable<std::shared_ptr<LeaseState>> current();

  /// The live lease, or null.
  std::shared_ptr<LeaseState> live() const { return lease && !lease->lost() ? lease : nullptr; }

  /// One Participant per election: its key is the election + the session's lease.
  void claim(const std::string& election);
  void release(const std::string& election) { elections.erase(election); }

  /// A participant destroyed in `election` while its key's deletion is under way: the next one
  /// there waits for it. Entries of deletions that have finished go at the same time, so the
  /// map holds only what is still in flight.
  void leave(const std::string& election, const std::shared_ptr<Withdrawal>& deleting) {
    std::erase_if(leaving, [](const auto& entry) {
      auto w = entry.second.lock();
      return !w || w->finished();
    });
    if (deleting && !deleting->finished()) leaving[election] = deleting;
  }

  /// The Session object is gone: its lease is revoked, and no new one is granted.
  void close();  // idempotent

  std::shared_ptr<ClientCore> core;
  const SessionOptions options;
  std::shared_ptr<LeaseState> lease;  // the last one granted
  std::set<std::string> elections;
  /// The key deletions of participants destroyed meanwhile, by election: the next participant
  /// in that election waits for it, so that a retried delete cannot take its new key.
  std::map<std::string, std::weak_ptr<Withdrawal>> leaving;
  bool closed = false;

 private:
  struct Grant {
    explicit Grant(boost::asio::any_io_executor executor) : done(std::move(executor)) {}
    AsyncEvent done;
    std::exception_ptr failure;
  };
  std::shared_ptr<Grant> grant_;  // in flight
};

}  // namespace election::detail
