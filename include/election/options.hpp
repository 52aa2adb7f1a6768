// The options of the library's objects: plain values, with no behaviour, so that every layer
// of the implementation can take them without depending on the objects they configure.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace election {

/// TLS to etcd's client port. Files are PEM and read when the Client is made.
struct TlsOptions {
  /// CA bundle to verify etcd's server certificate with. Empty: the system's root CAs.
  std::string ca_file{};

  /// Client certificate (chain) and its private key, for etcd's `--client-cert-auth`
  /// (mutual TLS). Both or neither.
  std::string cert_file{};
  std::string key_file{};

  /// The name the server certificate must carry, when it is not the endpoint's host
  /// (e.g. endpoints given as IP addresses, a certificate issued for a DNS name).
  std::string server_name{};
};

/// Something a Client's background work did that belongs in an operator's log: its long-lived
/// streams finding members, and moving off members that stopped answering.
struct ClientEvent {
  enum class Kind {
    watch_stream,       ///< the Watch stream (every election's watch) answers from `peer`
    watch_stalled,      ///< the Watch stream on `peer` fell silent and is opened again
    keep_alive_stream,  ///< a LeaseKeepAlive stream answers from `peer`
    keep_alive_hedged,  ///< renewals on `peer` went unanswered: a stream opened beside it
    /// Background work of the Client (the keep-alive, the watch stream, an election's feed, a
    /// lease's revocation) failed with an exception nothing expected: `what` says which, and
    /// what it said. Counted in ClientMetrics::internal_errors. A bug worth reporting.
    internal_error,
  };
  Kind kind;
  /// The member, as gRPC names it ("ipv4:127.0.0.1:2379"); empty when not known.
  std::string peer;
  /// For internal_error: the work and the exception's text.
  std::string what{};
};

struct ClientOptions {
  /// etcd members as `host:port`, `http://host:port` or `https://host:port`, all plaintext or
  /// all TLS. TLS is used for `https://` endpoints, and for bare `host:port` ones when any
  /// `tls` field is set. Requests are spread over all members by gRPC's round-robin balancing;
  /// a member that fails is skipped.
  std::vector<std::string> endpoints{};

  /// How long connect() (and so Lease::grant and Participant::campaign) waits for the first
  /// connection before failing with errc::unreachable.
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};

  /// Deadline of every unary request. Long-lived streams have none.
  std::chrono::milliseconds request_timeout{std::chrono::seconds(5)};

  /// Unary requests of this Client in flight at once; the rest wait their turn, first come
  /// first served, and a request's deadline starts when it is sent. Thousands of campaigns
  /// started together then cost etcd a steady queue instead of a burst whose attempts time out
  /// and are sent again. Must be positive.
  std::size_t max_requests_in_flight = 256;

  /// HTTP/2 keep-alive pings on an idle connection with open streams, so a member that hangs
  /// (SIGSTOP, a VM freeze, a dead network path) is noticed and what waits on it (a campaign
  /// in line, an observer's watch) moves to another member: at most time + timeout after the
  /// hang. etcd refuses pings more often than every 5 s by default (--grpc-keepalive-min-time).
  std::chrono::milliseconds keepalive_time{std::chrono::seconds(6)};
  std::chrono::milliseconds keepalive_timeout{std::chrono::seconds(2)};

  TlsOptions tls{};

  /// etcd user and password, for an etcd with authentication enabled (`etcdctl auth enable`).
  /// The client authenticates on connect(), sends the token with every request and stream,
  /// and authenticates again when etcd no longer accepts the token (its TTL passed, the auth
  /// store changed), so long campaigns, leaderships and observers carry on. An etcd without
  /// authentication is used as is. Empty user: no authentication. Never appears in a message.
  std::string user{};
  std::string password{};

  /// Called for each ClientEvent, on the Client's executor. Must not block or throw. Empty:
  /// nothing is reported.
  std::function<void(const ClientEvent&)> on_event{};
};

struct LeaseOptions {
  /// Subtracted from "send time of the last acknowledged keep-alive + TTL" to give the local
  /// deadline. Negative (the default) means a tenth of the granted TTL, at most one second.
  std::chrono::milliseconds margin{-1};
};

struct ParticipantOptions {
  /// The lease TTL: how long after this process dies, hangs or is cut off another candidate can
  /// take over. etcd raises a TTL under its minimum (2 s by default); granted_ttl() tells.
  std::chrono::seconds ttl{10};
  LeaseOptions lease{};
  /// How long campaign() waits, at most, after winning before it returns (is_leader() stays
  /// false until then), when the previous leader's key went without its owner's say: an
  /// operator's `etcdctl del` or `lease revoke`, an expiry, a resignation by a client that does
  /// not sign (etcdctl elect), or etcd's own stale-leader revocation (README "A key removed
  /// before its lease ran out"). Its owner may still believe it leads until its watch shows the
  /// deletion; waiting a few watch round trips, counted from when the deletion was seen, keeps
  /// the two from acting at once. A key resigned by this library (resign(), a Leadership's
  /// stop, the destructor) is signed and needs no wait: takeover_wait() says what was waited.
  ///
  /// Unset (the default): chosen from the etcd version the Client finds (asked once, see
  /// default_takeover_delay): 200 ms on releases without the stale-leader fix, 0 on releases
  /// with it. A value set here always wins; 0 returns at once, as etcd's own Campaign does.
  std::optional<std::chrono::milliseconds> takeover_delay{};
};

struct SessionOptions {
  /// The lease TTL: how long after this process dies, hangs or is cut off another candidate can
  /// take over, in every election of the session.
  std::chrono::seconds ttl{10};
  LeaseOptions lease{};
};

}  // namespace election
