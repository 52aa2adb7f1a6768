// election::errc: every failure this library reports itself, as a boost::system error_code;
// election::error, the exception the awaitable operations throw; election::diagnostics, what
// the completion-token operations fill in; and the predicates the library classifies with.
//
// gRPC statuses that carry no more specific meaning map to grpc_category(), keeping the status
// code; the server's message is in election::error::server_message() and diagnostics.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <type_traits>

namespace election {

namespace detail {
struct access;
}  // namespace detail

/// Each value's sentence is its message(): tests/unit/error_test.cpp checks that they match.
enum class errc {
  // Bad input, reported before anything is sent.

  /// No etcd endpoint was given.
  no_endpoints = 1,
  /// An etcd endpoint is malformed (host:port, port 1 to 65535) or its host cannot be resolved.
  invalid_endpoint,
  /// A lease TTL must be a whole number of seconds greater than zero.
  invalid_ttl,
  /// An election name must be non-empty and must not end in '/'.
  invalid_election_name,
  /// The value is larger than etcd accepts in one request (1.5 MiB by default).
  value_too_large,
  /// An argument or a call is not allowed here: the message names the clash.
  invalid_argument,

  // Reaching etcd.

  /// No etcd endpoint could be reached within the connect timeout.
  unreachable,
  /// etcd did not answer within the request timeout.
  timeout,
  /// The client was closed; no further calls can be made through it.
  client_closed,
  /// etcd refused the requested lease TTL.
  ttl_refused,
  /// etcd refused the credentials or the authentication token.
  auth_failed,
  /// The etcd user has no permission for this key range.
  permission_denied,

  // Leases and leadership ending.

  /// The lease no longer exists on the server: it expired or was revoked.
  lease_expired,
  /// The lease was not renewed before its local deadline; the server may already have expired it.
  lease_deadline_passed,
  /// The lease was revoked by this process.
  lease_revoked,
  /// The leader key was deleted from etcd.
  key_deleted,
  /// Leadership was given up through resign().
  resigned,

  // Election state.

  /// This participant is not the leader.
  not_leader,
  /// The election has no leader.
  no_leader,
  /// The requested revision has been compacted away.
  compacted,

  // Reaching etcd, continued (appended to keep the values above stable).

  /// No TLS connection to etcd could be made: the server certificate was not trusted, the client
  /// certificate was refused, or one side does not speak TLS.
  tls_failed,

  // Leadership ending, continued.

  /// The leader's work returned, which ended the leadership.
  work_finished,
  /// The leader's work failed, which ended the leadership.
  work_failed,

  // Bad input, continued.

  /// The object this operation belongs to was destroyed or moved from before it started.
  object_gone,

  // Locks.

  /// The lock is held by another: try_lock() does not wait in line.
  lock_held,
};

/// The category of election::errc; its name is "election". Thread-safe.
const boost::system::error_category& error_category() noexcept;

/// The category that holds a gRPC status code verbatim (1..16); its name is "election.grpc".
const boost::system::error_category& grpc_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Whether a failure may go away by itself, so that retrying (with backoff) is the right answer:
/// etcd out of reach (errc::unreachable), too slow (errc::timeout), or a gRPC status that etcd
/// and gRPC use for passing trouble (UNAVAILABLE: no leader, leader changed, a member
/// restarting; DEADLINE_EXCEEDED; ABORTED; RESOURCE_EXHAUSTED: too many requests; INTERNAL: a
/// connection reset mid-call). Refused credentials, missing permissions, bad input and a
/// closed client are not: they need the caller. The library retries exactly these everywhere.
bool is_transient(const boost::system::error_code& ec) noexcept;

/// Whether `ec` is a reason a leadership (or a wait in line) ends without anything being wrong
/// with the caller's setup: errc::resigned, errc::lease_expired, errc::lease_deadline_passed,
/// errc::lease_revoked, errc::key_deleted, errc::work_finished, errc::work_failed. A campaign
/// again is the answer to each.
bool ends_leadership(const boost::system::error_code& ec) noexcept;

/// What the awaitable operations throw: a system_error whose what() says what was being done
/// and why it failed, and which keeps etcd's own message apart. Never holds a password, a token
/// or key material.
class error : public boost::system::system_error {
 public:
  error(boost::system::error_code code, const std::string& what, std::string server_message = {})
      : boost::system::system_error(code, what), server_message_(std::move(server_message)) {}

  /// What etcd (or gRPC) said, e.g. "etcdserver: permission denied"; empty when the failure is
  /// the library's own (bad input, a local deadline).
  const std::string& server_message() const noexcept { return server_message_; }

 private:
  std::string server_message_;
};

/// Filled in by a completion-token operation that fails, for the caller on the error-code path:
/// the same text an awaitable operation's exception carries, and etcd's own message. Cleared
/// when an operation starts; it must live until that operation's handler has been called.
class diagnostics {
 public:
  /// What was being done and why it failed ("campaign: etcdserver: permission denied ...").
  const std::string& message() const noexcept { return message_; }
  /// What etcd said, as election::error::server_message().
  const std::string& server_message() const noexcept { return server_message_; }

  void clear() noexcept {
    message_.clear();
    server_message_.clear();
  }

 private:
  friend struct detail::access;  // fills it in
  std::string message_;
  std::string server_message_;
};

}  // namespace election

namespace boost::system {
template <>
struct is_error_code_enum<election::errc> : std::true_type {};
}  // namespace boost::system
