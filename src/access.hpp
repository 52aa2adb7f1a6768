// How the library (and its tests) reach the state behind the public classes: one friend, no
// public accessor. Private to the library.
#pragma once

#include "election/client.hpp"
#include "election/lease.hpp"
#include "election/participant.hpp"

#include <memory>

namespace election::detail {

struct access {
  static const std::shared_ptr<ClientCore>& core(const Client& client) { return client.core_; }
  static const std::shared_ptr<LeaseState>& state(const Lease& lease) { return lease.state_; }
  static Lease lease(std::shared_ptr<LeaseState> state) { return Lease(std::move(state)); }
  /// The lease of a participant's current (or last) leadership (participant.cpp).
  static std::shared_ptr<LeaseState> participant_lease(const Participant& participant);
};

}  // namespace election::detail
