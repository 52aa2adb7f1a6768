// ClientCore: the channel, its stubs and credentials, authentication, the request limit and the
// Client's shared bookkeeping (transport/client_core.hpp).
#include "transport/client_core.hpp"
#include "base/async_event.hpp"
#include "base/throw.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace election {
namespace detail {

namespace asio = boost::asio;

namespace {

std::string read_pem(const std::string& path, const char* option) {
  auto bad = [&](const std::string& why) {
    throw_error(errc::invalid_argument,
                std::string("ClientOptions::") + option + " '" + path + "': " + why);
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) bad(std::string("cannot read: ") + std::strerror(errno));
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) bad("cannot read");
  std::string text = std::move(content).str();
  if (text.find("-----BEGIN ") == std::string::npos) bad("not a PEM file");
  return text;
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// gRPC reports a failed handshake in its connection error; etcd then closes the connection.
bool tls_problem(const std::string& message) {
  for (const char* text : {"andshake", "SSL", "ssl", "TLS", "ertificate"})
    if (contains(message, text)) return true;
  return false;
}

}  // namespace

ClientCore::ClientCore(asio::any_io_executor executor, ClientOptions options)
    : executor_(std::move(executor)), options_(std::move(options)) {
  if (options_.connect_timeout <= std::chrono::milliseconds::zero() ||
      options_.request_timeout <= std::chrono::milliseconds::zero())
    throw_error(errc::invalid_argument, "connect_timeout and request_timeout must be positive");
  if (options_.max_requests_in_flight == 0)
    throw_error(errc::invalid_argument, "ClientOptions::max_requests_in_flight must be positive");
  const Target target = make_target(options_.endpoints);
  const auto& tls = options_.tls;
  const bool tls_options = !tls.ca_file.empty() || !tls.cert_file.empty() ||
                           !tls.key_file.empty() || !tls.server_name.empty();
  if (target.http && tls_options)
    throw_error(errc::invalid_endpoint,
                "endpoints " + endpoint_list() +
                    " are http:// (plaintext) but ClientOptions::tls is set: use https://");
  if (tls.cert_file.empty() != tls.key_file.empty())
    throw_error(errc::invalid_argument,
                "ClientOptions::tls.cert_file and tls.key_file must be given together");
  if (options_.user.empty() && !options_.password.empty())
    throw_error(errc::invalid_argument, "ClientOptions::password is set but user is empty");
  use_tls_ = target.https || tls_options;

  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options_.keepalive_time.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(options_.keepalive_timeout.count()));
  // etcd's enforcement policy refuses pings when no stream is open.
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // A restarted member should be used again within a second, not after gRPC's 2-minute backoff.
  // gRPC takes the "min" value as the time one connection attempt is given (TCP, TLS, HTTP/2
  // SETTINGS): the connect timeout, at least a second, so that a link with a round trip over a
  // second (a cross-region etcd) can connect at all. Refused connections fail at once whatever
  // it is; only a hung attempt (a frozen member, a dead path) waits it out.
  const auto attempt_ms =
      std::clamp<std::chrono::milliseconds::rep>(options_.connect_timeout.count(), 1000, 20000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(attempt_ms));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, target.authority);
  // etcd sends responses of any size (a range or a watch catch-up over many large values); as
  // etcd's Go client does, take them. gRPC's default would refuse anything over 4 MiB.
  args.SetMaxReceiveMessageSize(-1);
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (use_tls_) {
    grpc::SslCredentialsOptions ssl;
    if (!tls.ca_file.empty()) ssl.pem_root_certs = read_pem(tls.ca_file, "tls.ca_file");
    if (!tls.cert_file.empty()) {
      ssl.pem_cert_chain = read_pem(tls.cert_file, "tls.cert_file");
      ssl.pem_private_key = read_pem(tls.key_file, "tls.key_file");
    }
    if (!tls.server_name.empty()) args.SetSslTargetNameOverride(tls.server_name);
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  channel_ = grpc::CreateCustomChannel(target.uri, credentials, args);
  kv_ = etcdserverpb::KV::NewStub(channel_);
  lease_ = etcdserverpb::Lease::NewStub(channel_);
  watch_ = etcdserverpb::Watch::NewStub(channel_);
  auth_ = etcdserverpb::Auth::NewStub(channel_);
  maintenance_ = etcdserverpb::Maintenance::NewStub(channel_);
}

ClientCore::~ClientCore() { close(); }

void ClientCore::close() {
  // A revocation already sent gets up to a second to land: the candidate's key then goes at
  // once instead of a TTL later. gRPC completes it without this thread.
  tracker_->close(
      std::min<std::chrono::milliseconds>(options_.request_timeout, std::chrono::seconds(1)));
}

void ClientCore::internal_error(const char* what, const std::exception_ptr& e) {
  std::string text;
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& x) {
    if (x.code() == asio::error::operation_aborted) return;  // stopped, as it should be
    text = x.what();
  } catch (const std::exception& x) {
    text = x.what();
  } catch (...) {
    text = "an exception that is not a std::exception";
  }
  stats_.internal_errors.fetch_add(1, std::memory_order_relaxed);
  report(ClientEvent::Kind::internal_error, {}, std::string(what) + ": " + text);
}

std::chrono::milliseconds ClientCore::attempt_timeout() const {
  using namespace std::chrono;
  if (!rtt_.known())
    return std::clamp<milliseconds>(options_.request_timeout / 3, milliseconds(500), seconds(2));
  const auto wanted = duration_cast<milliseconds>(2 * rtt_.timeout(milliseconds(250)));
  return std::clamp<milliseconds>(wanted, milliseconds(500), options_.request_timeout);
}

void ClientCore::claim_election(const std::string& name) {
  if (auto it = elections_.find(name); it != elections_.end()) {
    ++it->second;
    return;
  }
  // Any election in use whose name is a path prefix of this one: cut `name` at each '/'.
  for (auto at = name.find('/'); at != std::string::npos; at = name.find('/', at + 1)) {
    const auto outer = name.substr(0, at);
    if (elections_.count(outer))
      throw_error(errc::invalid_argument, "election '" + name + "' nests inside election '" +
                                              outer + "' used on this client: '" + outer +
                                              "' would count the candidates of '" + name +
                                              "' (under '" + outer + "/') as its own");
  }
  // Any election in use inside this one: names that start with name + "/".
  const auto prefix = name + "/";
  if (auto it = elections_.lower_bound(prefix);
      it != elections_.end() && it->first.compare(0, prefix.size(), prefix) == 0)
    throw_error(errc::invalid_argument, "election '" + name + "' would hold election '" +
                                            it->first + "' used on this client: '" + name +
                                            "' would count the candidates of '" + it->first +
                                            "' (under '" + prefix + "') as its own");
  elections_[name] = 1;
}

void ClientCore::release_election(const std::string& name) {
  auto it = elections_.find(name);
  if (it != elections_.end() && --it->second == 0) elections_.erase(it);
}

void ClientCore::check_outside_elections(const std::string& key, const std::string& what) const {
  for (auto at = key.find('/'); at != std::string::npos; at = key.find('/', at + 1)) {
    const auto election = key.substr(0, at);
    if (elections_.count(election))
      throw_error(errc::invalid_argument,
                  what + ": key '" + key + "' is under the prefix '" + election +
                      "/' of election '" + election +
                      "': a key there is a candidate, and one without a lease would lead that "
                      "election for ever");
  }
  // A resignation's signature (kv.hpp): election + "0" + NUL + hex.
  for (auto at = key.find(std::string_view("0\0", 2)); at != std::string::npos;
       at = key.find(std::string_view("0\0", 2), at + 1)) {
    const auto election = key.substr(0, at);
    if (elections_.count(election))
      throw_error(errc::invalid_argument,
                  what + ": key is where election '" + election + "' signs its resignations");
  }
}

/// One Maintenance Status call, waited for by every caller that asks meanwhile.
struct VersionQuery {
  explicit VersionQuery(asio::any_io_executor executor) : done(std::move(executor)) {}
  AsyncEvent done;
};

asio::awaitable<std::string> ClientCore::server_version() {
  while (!server_version_) {
    if (auto pending = version_query_) {
      co_await pending->done.wait();
      continue;
    }
    auto query = std::make_shared<VersionQuery>(executor_);
    version_query_ = query;
    std::string version;
    try {
      auto reply = co_await call_retrying("status", maintenance_->async(),
                                          &etcdserverpb::Maintenance::Stub::async::Status,
                                          etcdserverpb::StatusRequest{});
      version = reply.version();
    } catch (const boost::system::system_error& e) {
      // A cancelled caller, or etcd away for now: the next caller asks again (this one learns
      // nothing). Any other failure means etcd will not say: remembered as unknown.
      const bool again = e.code() == asio::error::operation_aborted ||
                         e.code() == errc::client_closed || is_transient(e.code());
      if (again) {
        version_query_.reset();
        query->done.set();
        if (is_transient(e.code())) co_return std::string();
        throw;
      }
    }
    server_version_ = version;
    version_query_.reset();
    query->done.set();
  }
  co_return *server_version_;
}

std::string ClientCore::endpoint_list() const {
  std::string list;
  for (const auto& e : options_.endpoints) list += (list.empty() ? "" : ",") + e;
  return list;
}

bool ClientCore::channel_ready() const { return channel_->GetState(false) == GRPC_CHANNEL_READY; }

std::unique_ptr<grpc::ClientContext> ClientCore::unary_context() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + options_.request_timeout);
  // Wait out a reconnect (a member restarting) within the deadline instead of failing at once.
  ctx->set_wait_for_ready(true);
  if (!token_.empty()) ctx->AddMetadata("token", token_);
  return ctx;
}

std::unique_ptr<grpc::ClientContext> ClientCore::stream_context() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  // A member cut off from its raft leader refuses (and later cancels) the stream rather than
  // keeping it open and silent.
  ctx->AddMetadata("hasleader", "true");
  if (!token_.empty()) ctx->AddMetadata("token", token_);
  return ctx;
}

void ClientCore::throw_status(const grpc::Status& status, const std::string& what) const {
  const auto ec = to_error_code(status, channel_ready());
  std::string detail = what;
  if (ec == errc::unreachable) detail += ": no connection to " + endpoint_list();
  if (!status.error_message().empty()) detail += ": " + status.error_message();
  if (ec == errc::auth_failed && !has_credentials())
    detail += " (etcd has authentication enabled: set ClientOptions::user and password)";
  throw error(ec, detail, status.error_message());
}

bool ClientCore::token_rejected(const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) return true;
  const auto& m = status.error_message();
  return contains(m, "invalid auth token") || contains(m, "revision of auth store is old") ||
         contains(m, "user name is empty");
}

/// One authentication, waited for by every caller that needs a new token meanwhile.
struct AuthAttempt {
  explicit AuthAttempt(asio::any_io_executor executor) : done(std::move(executor)) {}
  AsyncEvent done;
  std::exception_ptr failure;
};

asio::awaitable<void> ClientCore::refresh_token(std::uint64_t seen) {
  for (;;) {
    if (token_generation_ != seen) co_return;
    auto pending = auth_attempt_;
    if (!pending) break;
    co_await pending->done.wait();
    if (!pending->failure) continue;
    // Its caller's cancellation is not ours: then this caller tries itself.
    try {
      std::rethrow_exception(pending->failure);
    } catch (const boost::system::system_error& e) {
      if (e.code() != asio::error::operation_aborted) throw;
    }
  }
  auto attempt = std::make_shared<AuthAttempt>(executor_);
  auth_attempt_ = attempt;
  try {
    co_await authenticate();
  } catch (...) {
    attempt->failure = std::current_exception();
  }
  auth_attempt_.reset();
  attempt->done.set();
  if (attempt->failure) std::rethrow_exception(attempt->failure);
}

asio::awaitable<void> ClientCore::authenticate() {
  const std::string what = "authenticate as etcd user '" + options_.user + "'";
  if (tracker_->closed()) throw_error(errc::client_closed, what);
  etcdserverpb::AuthenticateRequest request;
  request.set_name(options_.user);
  request.set_password(options_.password);
  // Without the old token: etcd must judge the password alone.
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + options_.request_timeout);
  ctx->set_wait_for_ready(true);
  auto [status, response] =
      co_await call_status(std::move(ctx), auth_->async(),
                           &etcdserverpb::Auth::Stub::async::Authenticate, std::move(request));
  if (status.ok()) {
    token_ = response.token();
    ++token_generation_;
    co_return;
  }
  if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
      contains(status.error_message(), "authentication is not enabled")) {
    // As etcd's Go client does: credentials for an etcd without authentication are not an error.
    token_.clear();
    ++token_generation_;
    co_return;
  }
  // etcd's message names neither the password nor the token.
  throw_status(status, what);
}

asio::awaitable<void> ClientCore::connect() {
  if (!channel_ready()) co_await wait_connected();
  if (has_credentials() && token_generation_ == 0) co_await refresh_token(0);
}

// Fail-fast requests, repeated until one is answered: a request, not a connectivity-state poll,
// because gRPC makes progress on a connection attempt only while some call drives it, and
// fail-fast because its failure carries gRPC's last connection error (refused, TLS handshake
// failed, ...), which a wait-for-ready request that runs out of time does not. A serializable
// count of one key is answered by the member itself, without raft. Any answer, even a refusal,
// proves the connection.
asio::awaitable<void> ClientCore::wait_connected() {
  if (tracker_->closed()) throw_error(errc::client_closed, "connect");
  const auto deadline = std::chrono::system_clock::now() + options_.connect_timeout;
  asio::steady_timer pause(executor_);
  std::string last_error;
  for (;;) {
    etcdserverpb::RangeRequest request;
    request.set_key(std::string(1, '\0'));
    request.set_serializable(true);
    request.set_count_only(true);
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(deadline);
    auto [status, response] = co_await call_status(
        std::move(ctx), kv_->async(), &etcdserverpb::KV::Stub::async::Range, std::move(request));
    const auto code = status.error_code();
    if (code == grpc::StatusCode::CANCELLED) throw_status(status, "connect");
    if (code != grpc::StatusCode::UNAVAILABLE && code != grpc::StatusCode::DEADLINE_EXCEEDED)
      co_return;
    if (code == grpc::StatusCode::UNAVAILABLE) last_error = status.error_message();
    const auto now = std::chrono::system_clock::now();
    if (code == grpc::StatusCode::DEADLINE_EXCEEDED || now >= deadline) break;
    // The channel waits out its reconnect backoff in between; asking more often costs nothing.
    // The last pause ends at the deadline, so the error comes at the connect timeout, not before.
    pause.expires_after(std::min<std::chrono::system_clock::duration>(
        std::chrono::milliseconds(100), deadline - now));
    co_await pause.async_wait(asio::use_awaitable);
  }
  const std::string waited =
      " (waited " + std::to_string(options_.connect_timeout.count()) + " ms)";
  if (tls_problem(last_error))
    throw_error(errc::tls_failed,
                "connect to " + endpoint_list() + waited + ": TLS handshake failed: " + last_error);
  // A server that accepts the connection and then closes it: under TLS 1.3 that is how a
  // refused (or missing) client certificate looks to the client; without TLS, how a TLS
  // server answers a plaintext client.
  const bool closed_by_server = contains(last_error, "Socket closed") ||
                                contains(last_error, "read failed") ||
                                contains(last_error, "reset by peer");
  if (use_tls_ && closed_by_server)
    throw_error(errc::tls_failed,
                "connect to " + endpoint_list() + waited +
                    ": etcd closed the connection after the TLS handshake (does it require a "
                    "client certificate? set ClientOptions::tls.cert_file and key_file): " +
                    last_error);
  std::string hint;
  if (!use_tls_ && closed_by_server)
    hint = " (if etcd serves TLS, give the endpoints as https:// with ClientOptions::tls)";
  throw_error(errc::unreachable, "connect to " + endpoint_list() + waited + ": " +
                                     (last_error.empty() ? "no answer" : last_error) + hint);
}

}  // namespace detail
}  // namespace election
