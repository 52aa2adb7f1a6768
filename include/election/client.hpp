// election::Client: one gRPC channel to an etcd cluster.
#pragma once

#include "election/detail/initiate.hpp"
#include "election/error.hpp"
#include "election/metrics.hpp"
#include "election/options.hpp"

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
