// How the library (and its tests) reach the state behind the public classes: one friend, no
// public accessor. Private to the library.
#pragma once

#include "election/client.hpp"
#include "election/lease.hpp"

#include <memory>

namespace election::detail {

struct access {
  static const std::shared_ptr<ClientCore>& core(const Client& client) { return client.core_; }
  static const std::shared_ptr<LeaseState>& state(const Lease& lease) { return lease.state_; }
};

}  // namespace election::detail
