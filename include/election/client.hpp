// election::Client: one gRPC channel to an etcd cluster.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace election {

namespace detail {
class ClientCore;
}

struct ClientOptions {
  /// etcd members as `host:port` (an `http://` prefix is accepted and dropped). Requests are
  /// spread over all of them by gRPC's round-robin balancing; a member that fails is skipped.
  std::vector<std::string> endpoints;

  /// How long connect() (and so Lease::grant and Participant::campaign) waits for the first
  /// connection before failing with errc::unreachable.
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};

  /// Deadline of every unary request. Long-lived streams have none.
  std::chrono::milliseconds request_timeout{std::chrono::seconds(5)};

  /// HTTP/2 keep-alive pings on an idle connection with open streams, so a member that hangs
  /// is noticed. etcd refuses pings more often than every 5 s by default.
  std::chrono::milliseconds keepalive_time{std::chrono::seconds(10)};
  std::chrono::milliseconds keepalive_timeout{std::chrono::seconds(5)};
};

/// One channel to an etcd cluster, shared by the Leases and Participants made from it.
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
  /// (naming the endpoint) for bad options. Does not connect.
  Client(executor_type executor, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  executor_type get_executor() const;
  const ClientOptions& options() const;

  /// Completes once a connection to some endpoint is ready. Throws errc::unreachable after
  /// ClientOptions::connect_timeout. Cancellable.
  boost::asio::awaitable<void> connect();

  /// For the library's own classes.
  const std::shared_ptr<detail::ClientCore>& core() const { return core_; }

 private:
  std::shared_ptr<detail::ClientCore> core_;
};

}  // namespace election
