// election::Client: one gRPC channel to an etcd cluster.
#pragma once

#include "election/detail/initiate.hpp"
#include "election/error.hpp"
#include "election/metrics.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace election {

namespace detail {
class ClientCore;
struct access;
}  // namespace detail

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

/// One channel to an etcd cluster, shared by the Leases and Participants made from it.
///
/// Each asynchronous operation comes as an awaitable that throws election::error, and in a
/// completion-token form (see Participant) that completes with an error_code first.
///
/// All objects made from a Client run on its executor, which must not run handlers
/// concurrently (an io_context run by one thread, or a strand).
/// Thread safety: distinct objects: safe; shared objects: unsafe.
/// Lifetime: destroy the Client before its io_context. Destroying it cancels every call still in
/// flight and waits (briefly) until gRPC has let go of them; Leases and Participants that outlive
/// it fail with errc::client_closed.
class Client {
 public:
  using executor_type = boost::asio::any_io_executor;

  /// Throws boost::system::system_error with errc::no_endpoints or errc::invalid_endpoint
  /// (naming the endpoint), or errc::invalid_argument (naming the option or the file that cannot
  /// be read) for bad options. Does not connect.
  Client(executor_type executor, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  executor_type get_executor() const;
  const ClientOptions& options() const;

  /// What the keep-alive and the watch streams have done so far. Safe from any thread.
  ClientMetrics metrics() const;

  /// Connect: waits until a connection to some endpoint is ready and, with a user, etcd
  /// accepted the credentials. Optional: every operation connects first.
  ///
  /// Completes: once connected. Token form: void(error_code).
  /// Errors: errc::unreachable or errc::tls_failed (with gRPC's last connection error) after
  ///   ClientOptions::connect_timeout, errc::auth_failed for refused credentials,
  ///   errc::client_closed.
  /// Cancellation: terminal, partial, total (nothing is left behind).
  boost::asio::awaitable<void> connect();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                CompletionToken = default_token>
  auto async_connect(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code)>(
        std::forward<CompletionToken>(token), nullptr, detail::bind_start(&start_connect, core_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                CompletionToken = default_token>
  auto async_connect(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_connect, core_));
  }

  /// Server version: the etcd version (e.g. "3.4.23") of the member that answers a Maintenance
  /// Status call, after connect(); asked once per Client and remembered. The default takeover
  /// delay follows it (default_takeover_delay).
  ///
  /// Completes with: the version; empty when etcd would not say, or could not be reached (then
  ///   asked again next time). Token form: void(error_code, std::string).
  /// Errors: as connect(), and errc::client_closed.
  /// Cancellation: terminal, partial, total.
  boost::asio::awaitable<std::string> server_version();

  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::string))
                CompletionToken = default_token>
  auto async_server_version(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::string)>(
        std::forward<CompletionToken>(token), nullptr,
        detail::bind_start(&start_server_version, core_));
  }
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::string))
                CompletionToken = default_token>
  auto async_server_version(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, std::string)>(
        std::forward<CompletionToken>(token), &diag,
        detail::bind_start(&start_server_version, core_));
  }

 private:
  friend struct detail::access;
  friend class Lease;
  template <class... Values>
  using Handler = boost::asio::any_completion_handler<void(boost::system::error_code, Values...)>;
  // The compiled side of each token form (client.cpp), on the state they were made with.
  static void start_connect(std::shared_ptr<detail::ClientCore> core, Handler<> handler,
                            diagnostics* diag);
  static void start_server_version(std::shared_ptr<detail::ClientCore> core,
                                   Handler<std::string> handler, diagnostics* diag);

  std::shared_ptr<detail::ClientCore> core_;
};

}  // namespace election
