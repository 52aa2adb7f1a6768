#include "access.hpp"
#include "async_event.hpp"
#include "client_core.hpp"
#include "launch.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace election {
namespace detail {
namespace {

namespace asio = boost::asio;

struct Endpoint {
  std::string host;  // without brackets
  std::string port;
  std::string_view scheme;  // "http", "https" or empty
};

Endpoint parse_endpoint(std::string_view text) {
  const std::string original(text);
  auto bad = [&](const std::string& why) {
    throw_error(errc::invalid_endpoint, "endpoint '" + original + "': " + why);
  };
  std::string_view scheme;
  if (text.starts_with("http://")) {
    scheme = "http";
    text.remove_prefix(7);
  } else if (text.starts_with("https://")) {
    scheme = "https";
    text.remove_prefix(8);
  }
  if (text.find("://") != std::string_view::npos) bad("unknown scheme");
  if (!text.empty() && text.back() == '/') text.remove_suffix(1);
  std::string_view host, port;
  if (text.starts_with("[")) {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      bad("expected [ipv6]:port");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) bad("expected host:port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) bad("an IPv6 address must be in brackets");
  }
  if (host.empty()) bad("empty host");
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value < 1 ||
      value > 65535)
    bad("port must be a number from 1 to 65535");
  return {std::string(host), std::string(port), scheme};
}

// The whole file, which must hold a PEM block. The message names the option and the file,
// never the content: a key file's content is a secret.
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

Target make_target(const std::vector<std::string>& endpoints) {
  if (endpoints.empty()) throw_error(errc::no_endpoints, "ClientOptions::endpoints is empty");
  std::vector<Endpoint> parsed;
  for (const auto& e : endpoints) parsed.push_back(parse_endpoint(e));
  Target target;
  for (const auto& e : parsed) {
    target.https = target.https || e.scheme == "https";
    target.http = target.http || e.scheme == "http";
  }
  if (target.https && target.http)
    throw_error(errc::invalid_endpoint, "endpoints mix http:// and https:// members");
  target.authority = parsed.front().host + ":" + parsed.front().port;

  if (parsed.size() == 1) {
    boost::system::error_code ec;
    asio::ip::make_address(parsed.front().host, ec);
    if (ec) {
      // A single name: let gRPC's DNS resolver own it, so it is re-resolved on failure.
      target.uri = "dns:///" + target.authority;
      return target;
    }
  }
  // Several members: gRPC's ipv4:/ipv6: schemes take a comma-separated address list, which the
  // round-robin policy spreads calls over. Names are resolved once, here.
  std::vector<std::string> v4, v6;
  asio::io_context resolver_context;
  asio::ip::tcp::resolver resolver(resolver_context);
  for (const auto& e : parsed) {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(e.host, ec);
    std::vector<asio::ip::address> addresses;
    if (!ec) {
      addresses.push_back(address);
    } else {
      auto results = resolver.resolve(e.host, e.port, ec);
      if (ec)
        throw_error(errc::invalid_endpoint, "endpoint '" + e.host + ":" + e.port +
                                                "': cannot resolve host: " + ec.message());
      for (const auto& r : results) addresses.push_back(r.endpoint().address());
    }
    for (const auto& a : addresses) {
      if (a.is_v4())
        v4.push_back(a.to_string() + ":" + e.port);
      else
        v6.push_back("[" + a.to_string() + "]:" + e.port);
    }
  }
  auto join = [](const std::vector<std::string>& list) {
    std::string out;
    for (const auto& item : list) out += (out.empty() ? "" : ",") + item;
    return out;
  };
  if (!v4.empty() && !v6.empty() && v4.size() != parsed.size())
    throw_error(errc::invalid_endpoint, "endpoints mix IPv4 and IPv6 members");
  target.uri = !v4.empty() ? "ipv4:" + join(v4) : "ipv6:" + join(v6);
  return target;
}

boost::system::error_code to_error_code(const grpc::Status& status, bool channel_ready) {
  const std::string& message = status.error_message();
  auto has = [&](std::string_view text) { return message.find(text) != std::string::npos; };
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return {};
    case grpc::StatusCode::CANCELLED:
      return asio::error::operation_aborted;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return channel_ready ? errc::timeout : errc::unreachable;
    case grpc::StatusCode::UNAVAILABLE:
      if (!channel_ready || has("failed to connect") || has("Connection refused"))
        return errc::unreachable;
      break;
    case grpc::StatusCode::NOT_FOUND:
      if (has("lease not found")) return errc::lease_expired;
      break;
    case grpc::StatusCode::OUT_OF_RANGE:
      if (has("lease TTL")) return errc::ttl_refused;
      if (has("compacted")) return errc::compacted;
      break;
    case grpc::StatusCode::UNKNOWN:
      if (has("election: not leader")) return errc::not_leader;
      if (has("election: no leader")) return errc::no_leader;
      // The election service passes etcd's auth errors on as plain errors: only the text says.
      if (has("etcdserver: permission denied")) return errc::permission_denied;
      if (has("etcdserver: invalid auth token") || has("etcdserver: user name is empty") ||
          has("etcdserver: revision of auth store is old"))
        return errc::auth_failed;
      break;
    case grpc::StatusCode::INVALID_ARGUMENT:
      if (has("request is too large")) return errc::value_too_large;
      // etcd 3.4 refuses a bad password, a request without a token while authentication is on,
      // and a token older than the auth store with INVALID_ARGUMENT.
      if (has("authentication failed") || has("user name is empty") ||
          has("revision of auth store is old"))
        return errc::auth_failed;
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      if (has("larger than max")) return errc::value_too_large;
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
      return errc::auth_failed;
    case grpc::StatusCode::PERMISSION_DENIED:
      return errc::permission_denied;
    default:
      break;
  }
  return {static_cast<int>(status.error_code()), grpc_category()};
}

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

namespace asio = boost::asio;

Client::Client(executor_type executor, ClientOptions options)
    : core_(std::make_shared<detail::ClientCore>(std::move(executor), std::move(options))) {}

Client::~Client() { core_->close(); }

Client::executor_type Client::get_executor() const { return core_->executor(); }

const ClientOptions& Client::options() const { return core_->options(); }

ClientMetrics Client::metrics() const { return core_->stats().snapshot(); }

std::function<std::optional<ClientMetrics>()> detail::access::client_probe(const Client& client) {
  return [weak = std::weak_ptr<ClientCore>(client.core_)]() -> std::optional<ClientMetrics> {
    if (auto core = weak.lock()) return core->stats().snapshot();
    return std::nullopt;
  };
}

namespace detail {
namespace {

asio::awaitable<void> connect_of(std::shared_ptr<ClientCore> core) { co_await core->connect(); }

asio::awaitable<std::string> server_version_of(std::shared_ptr<ClientCore> core) {
  co_await core->connect();
  co_return co_await core->server_version();
}

}  // namespace
}  // namespace detail

asio::awaitable<void> Client::connect() {
  return detail::run_on(core_->executor(), detail::connect_of(core_),
                        detail::Cancellation::without_effects);
}

void Client::start_connect(std::shared_ptr<detail::ClientCore> core, Handler<> handler,
                           diagnostics* diag) {
  auto executor = core->executor();
  detail::launch(executor, detail::connect_of(std::move(core)), std::move(handler), diag,
                 detail::Cancellation::without_effects);
}

asio::awaitable<std::string> Client::server_version() {
  return detail::run_on(core_->executor(), detail::server_version_of(core_),
                        detail::Cancellation::without_effects);
}

void Client::start_server_version(std::shared_ptr<detail::ClientCore> core,
                                  Handler<std::string> handler, diagnostics* diag) {
  auto executor = core->executor();
  detail::launch(executor, detail::server_version_of(std::move(core)), std::move(handler), diag,
                 detail::Cancellation::without_effects);
}

}  // namespace election
