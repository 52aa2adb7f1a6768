// How the library (and its tests) reach the state behind the public classes: one friend, no
// public accessor. Private to the library.
#pragma once

#include "election/client.hpp"
#include "election/leadership.hpp"
#include "election/lease.hpp"
#include "election/metrics.hpp"
#include "election/participant.hpp"
#include "election/session.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <utility>

namespace election::detail {

struct access {
  static void fill(diagnostics& diag, std::string message, std::string server_message) {
    diag.message_ = std::move(message);
    diag.server_message_ = std::move(server_message);
  }

  static const std::shared_ptr<ClientCore>& core(const Client& client) { return client.core_; }
  static const std::shared_ptr<LeaseState>& state(const Lease& lease) { return lease.state_; }
  static Lease lease(std::shared_ptr<LeaseState> state) { return Lease(std::move(state)); }
  static const std::shared_ptr<SessionState>& session(const Session& session) {
    return session.state_;
  }
  static const std::shared_ptr<ClientCore>& session_core(const Session& session);  // session.cpp
  static const SessionOptions& session_options(const Session& session);            // session.cpp
  /// The lease of a participant's current (or last) leadership (participant.cpp).
  static std::shared_ptr<LeaseState> participant_lease(const Participant& participant);
  /// The state behind a participant (participant.cpp); null for one moved from.
  static std::shared_ptr<ParticipantState> participant_state(const Participant& participant);
  /// Calls `f` each time a campaign of `participant` has its key in line (participant.cpp).
  static void on_in_line(Participant& participant, std::function<void()> f);

  /// For metrics exporters on other threads: probes that keep nothing alive and return nothing
  /// once their object is gone (client.cpp, leadership.cpp).
  static std::function<std::optional<ClientMetrics>()> client_probe(const Client& client);
  static std::function<std::optional<std::pair<LeadershipMetrics, Health>>()> leadership_probe(
      const Leadership& leadership);
};

}  // namespace election::detail
