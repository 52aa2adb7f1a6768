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

}  // namespace election

namespace boost::system {
template <>
struct is_error_code_enum<election::errc> : std::true_type {};
}  // namespace boost::system
