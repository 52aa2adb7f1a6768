// Options the tests build again and again.
#pragma once

#include "election/election.hpp"
#include "support/etcd_cluster.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace election::test {

inline ClientOptions options_for(std::vector<std::string> endpoints) {
  ClientOptions options;
  options.endpoints = std::move(endpoints);
  return options;
}

/// The etcd that the CTest fixture started.
inline ClientOptions fixture_options() { return options_for(fixture_endpoints()); }

inline ParticipantOptions ttl(std::chrono::seconds t) {
  ParticipantOptions options;
  options.ttl = t;
  return options;
}

}  // namespace election::test
