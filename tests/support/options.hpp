// Options the tests build again and again.
#pragma once

#include "election/election.hpp"
#include "support/etcd_cluster.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace election::test {

inline ClientOptions options_for(std::vector<std::string> endpoints) {
  ClientOptions options;
  options.endpoints = std::move(endpoints);
  return options;
}

/// One endpoint (in a coroutine, an initializer list of strings trips g++ 12: build it here).
inline ClientOptions options_at(const std::string& endpoint) {
  return options_for(std::vector<std::string>{endpoint});
}

/// Through a local proxy's port (the chaos suite's Proxy) on loopback.
inline ClientOptions options_via(std::uint16_t port) {
  return options_at("127.0.0.1:" + std::to_string(port));
}

/// The etcd that the CTest fixture started.
inline ClientOptions fixture_options() { return options_for(fixture_endpoints()); }

inline ParticipantOptions ttl(std::chrono::seconds t) {
  ParticipantOptions options;
  options.ttl = t;
  return options;
}

}  // namespace election::test
