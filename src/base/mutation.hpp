// Mutation points: the places where the deterministic simulator (tests/sim) breaks the library
// on purpose, to show on every CI run that its checker catches each of these bugs. Outside the
// simulator's own build every point is the constant false, and its branch compiles away.
// Private to the library.
#pragma once

#ifdef ELECTION_SIM_MUTATIONS
namespace election::detail {

enum class Mutation {
  deadline_from_arrival,  ///< RenewalPlan: the local deadline counted from the answer's arrival
  no_takeover_delay,      ///< CampaignEngine: no takeover delay after an unsigned vacancy
  no_own_key_check,       ///< CampaignEngine: won once nothing is ahead, own key there or not
  renew_after_resign,     ///< RenewalPlan: remove() forgets nothing, renewals go on
};

/// Whether `m` is switched on; defined by the simulator, which builds these headers itself
/// (it does not link the library, whose copies of them have no mutation points).
bool mutated(Mutation m) noexcept;

}  // namespace election::detail
#define ELECTION_MUTATED(name) (::election::detail::mutated(::election::detail::Mutation::name))
#else
#define ELECTION_MUTATED(name) false
#endif
