// Small KV requests the election classes share, and input checks.
#pragma once

#include "base/keys.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>

namespace election::detail {

/// etcd's default --max-request-bytes (1.5 MiB); a larger value is refused before sending.
inline constexpr std::size_t max_request_bytes = 1536 * 1024;

/// Throws errc::invalid_election_name unless `name` is non-empty and does not end in '/'
/// (the election's keys live under name + "/", so "a/" would nest inside "a").
inline void check_election_name(const std::string& name) {
  if (name.empty()) throw_error(errc::invalid_election_name, "election name is empty");
  if (name.back() == '/')
    throw_error(errc::invalid_election_name, "election name '" + name + "' ends in '/'");
}

inline void check_value_size(const std::string& value, const char* what) {
  if (value.size() >= max_request_bytes)
    throw_error(errc::value_too_large, std::string(what) + ": value of " +
                                           std::to_string(value.size()) +
                                           " bytes is over etcd's request limit of " +
                                           std::to_string(max_request_bytes) + " bytes");
}

/// A transaction that applies while `key` exists with create revision `revision`, or, with 0,
/// while it does not exist. Entering the line, resign, proclaim and put_if_leader are all such
/// guarded Txns: one proposal each, which any member commits as soon as the cluster has a raft
/// leader, and safe to send again.
etcdserverpb::TxnRequest guarded_by(const std::string& key, std::int64_t revision);

/// A candidate key's put, on success: its value, attached to its lease.
void put_candidate(etcdserverpb::TxnRequest& request, const std::string& key,
                   const std::string& value, std::int64_t lease);

/// A signed resignation of `key` (a candidate key with create revision `create_revision` on
/// `lease`): guarded by the create revision, it deletes the key and puts its signature, whose
/// value is that create revision, with the lease, in one revision. Applied only while the key
/// is that incarnation; a failed compare changes nothing.
etcdserverpb::TxnRequest signed_resignation(const std::string& election, const std::string& key,
                                            std::int64_t create_revision, std::int64_t lease);

boost::asio::awaitable<etcdserverpb::RangeResponse> range(ClientCore& core, std::string key,
                                                          std::string range_end = {});

/// Revokes `lease`; one that etcd no longer has is not an error. `linger`: the Client's close
/// lets the request land first (a candidate withdrawing).
boost::asio::awaitable<void> revoke_lease(ClientCore& core, std::int64_t lease,
                                          bool linger = false);

/// Deletes `key` (one that does not exist is not an error). `linger` as for revoke_lease.
boost::asio::awaitable<void> delete_key(ClientCore& core, std::string key, bool linger = false);

}  // namespace election::detail
