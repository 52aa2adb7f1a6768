// election::errc: every failure this library reports itself, as a boost::system error_code.
// gRPC statuses that carry no more specific meaning map to grpc_category(), keeping the
// status code; the server's message travels in the system_error's what().
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <type_traits>

namespace election {

enum class errc {
  // Bad input, reported before anything is sent.
  no_endpoints = 1,
  invalid_endpoint,
  invalid_ttl,
  invalid_election_name,
  value_too_large,
  invalid_argument,

  // Reaching etcd.
  unreachable,
  timeout,
  client_closed,
  ttl_refused,
  auth_failed,
  permission_denied,

  // Leases and leadership ending.
  lease_expired,
  lease_deadline_passed,
  lease_revoked,
  key_deleted,
  resigned,

  // Election state.
  not_leader,
  no_leader,
  compacted,

  // Reaching etcd, continued (appended to keep the values above stable).
  tls_failed,
};

/// The category of election::errc; its name is "election".
const boost::system::error_category& error_category() noexcept;

/// The category that holds a gRPC status code verbatim (1..16); its name is "election.grpc".
const boost::system::error_category& grpc_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Throws boost::system::system_error for `e`, with `detail` prepended to the code's message.
[[noreturn]] void throw_error(errc e, const std::string& detail);

/// Whether a failure may go away by itself, so that retrying (with backoff) is the right answer:
/// etcd out of reach (errc::unreachable), too slow (errc::timeout), or a gRPC status that etcd
/// and gRPC use for passing trouble (UNAVAILABLE: no leader, leader changed, a member
/// restarting; DEADLINE_EXCEEDED; ABORTED; RESOURCE_EXHAUSTED: too many requests; INTERNAL: a
/// connection reset mid-call). Refused credentials, missing permissions, bad input and a
/// closed client are not: they need the caller. The library retries exactly these everywhere.
bool is_transient(const boost::system::error_code& ec) noexcept;

/// Whether `ec` is a reason a leadership (or a wait in line) ends without anything being wrong
/// with the caller's setup: errc::resigned, errc::lease_expired, errc::lease_deadline_passed,
/// errc::lease_revoked, errc::key_deleted. A campaign again is the answer to each.
bool ends_leadership(const boost::system::error_code& ec) noexcept;

}  // namespace election

namespace boost::system {
template <>
struct is_error_code_enum<election::errc> : std::true_type {};
}  // namespace boost::system
