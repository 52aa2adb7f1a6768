#include "election/error.hpp"

namespace election {
namespace {

class ErrcCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "election"; }

  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::no_endpoints:
        return "No etcd endpoint was given.";
      case errc::invalid_endpoint:
        return "An etcd endpoint is malformed (host:port, port 1 to 65535) or its host cannot be "
               "resolved.";
      case errc::invalid_ttl:
        return "A lease TTL must be a whole number of seconds greater than zero.";
      case errc::invalid_election_name:
        return "An election name must be non-empty and must not end in '/'.";
      case errc::value_too_large:
        return "The value is larger than etcd accepts in one request (1.5 MiB by default).";
      case errc::invalid_argument:
        return "An argument or a call is not allowed here: the message names the clash.";
      case errc::unreachable:
        return "No etcd endpoint could be reached within the connect timeout.";
      case errc::timeout:
        return "etcd did not answer within the request timeout.";
      case errc::client_closed:
        return "The client was closed; no further calls can be made through it.";
      case errc::ttl_refused:
        return "etcd refused the requested lease TTL.";
      case errc::auth_failed:
        return "etcd refused the credentials or the authentication token.";
      case errc::permission_denied:
        return "The etcd user has no permission for this key range.";
      case errc::lease_expired:
        return "The lease no longer exists on the server: it expired or was revoked.";
      case errc::lease_deadline_passed:
        return "The lease was not renewed before its local deadline; the server may already have "
               "expired it.";
      case errc::lease_revoked:
        return "The lease was revoked by this process.";
      case errc::key_deleted:
        return "The leader key was deleted from etcd.";
      case errc::resigned:
        return "Leadership was given up through resign().";
      case errc::not_leader:
        return "This participant is not the leader.";
      case errc::no_leader:
        return "The election has no leader.";
      case errc::compacted:
        return "The requested revision has been compacted away.";
      case errc::work_finished:
        return "The leader's work returned, which ended the leadership.";
      case errc::work_failed:
        return "The leader's work failed, which ended the leadership.";
      case errc::object_gone:
        return "The object this operation belongs to was destroyed or moved from before it "
               "started.";
      case errc::lock_held:
        return "The lock is held by another: try_lock() does not wait in line.";
      case errc::tls_failed:
        return "No TLS connection to etcd could be made: the server certificate was not trusted, "
               "the client certificate was refused, or one side does not speak TLS.";
    }
    return "Unknown election error.";
  }
};

class GrpcCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "election.grpc"; }

  std::string message(int ev) const override {
    static constexpr const char* names[] = {"OK",
                                            "CANCELLED",
                                            "UNKNOWN",
                                            "INVALID_ARGUMENT",
                                            "DEADLINE_EXCEEDED",
                                            "NOT_FOUND",
                                            "ALREADY_EXISTS",
                                            "PERMISSION_DENIED",
                                            "RESOURCE_EXHAUSTED",
                                            "FAILED_PRECONDITION",
                                            "ABORTED",
                                            "OUT_OF_RANGE",
                                            "UNIMPLEMENTED",
                                            "INTERNAL",
                                            "UNAVAILABLE",
                                            "DATA_LOSS",
                                            "UNAUTHENTICATED"};
    if (ev >= 0 && ev < static_cast<int>(std::size(names)))
      return std::string("gRPC status ") + names[ev];
    return "gRPC status " + std::to_string(ev);
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const ErrcCategory category;
  return category;
}

const boost::system::error_category& grpc_category() noexcept {
  static const GrpcCategory category;
  return category;
}

bool ends_leadership(const boost::system::error_code& ec) noexcept {
  return ec == errc::resigned || ec == errc::lease_expired || ec == errc::lease_deadline_passed ||
         ec == errc::lease_revoked || ec == errc::key_deleted || ec == errc::work_finished ||
         ec == errc::work_failed;
}

bool is_transient(const boost::system::error_code& ec) noexcept {
  if (ec == errc::unreachable || ec == errc::timeout) return true;
  if (ec.category() != grpc_category()) return false;
  switch (ec.value()) {
    case 4:   // DEADLINE_EXCEEDED
    case 8:   // RESOURCE_EXHAUSTED (sizes map to errc::value_too_large, not here)
    case 10:  // ABORTED
    case 13:  // INTERNAL
    case 14:  // UNAVAILABLE
      return true;
    default:
      return false;
  }
}

}  // namespace election
