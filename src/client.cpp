#include "client_core.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <charconv>

namespace election {
namespace detail {
namespace {

namespace asio = boost::asio;

struct Endpoint {
  std::string host;  // without brackets
  std::string port;
};

Endpoint parse_endpoint(std::string_view text) {
  const std::string original(text);
  auto bad = [&](const std::string& why) {
    throw_error(errc::invalid_endpoint, "endpoint '" + original + "': " + why);
  };
  if (text.starts_with("http://")) text.remove_prefix(7);
  if (text.starts_with("https://")) bad("TLS endpoints are not supported by this build");
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
  return {std::string(host), std::string(port)};
}

}  // namespace

Target make_target(const std::vector<std::string>& endpoints) {
  if (endpoints.empty()) throw_error(errc::no_endpoints, "ClientOptions::endpoints is empty");
  std::vector<Endpoint> parsed;
  for (const auto& e : endpoints) parsed.push_back(parse_endpoint(e));
  Target target;
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
      break;
    case grpc::StatusCode::INVALID_ARGUMENT:
      if (has("request is too large")) return errc::value_too_large;
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
  const Target target = make_target(options_.endpoints);

  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options_.keepalive_time.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(options_.keepalive_timeout.count()));
  // etcd's enforcement policy refuses pings when no stream is open.
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // A restarted member should be used again within a second, not after gRPC's 2-minute backoff.
  // The "min" value is also the least time one connection attempt is given (etcd's handshake
  // can take over 100 ms), so it stays at a second.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, target.authority);
  channel_ = grpc::CreateCustomChannel(target.uri, grpc::InsecureChannelCredentials(), args);
  kv_ = etcdserverpb::KV::NewStub(channel_);
  lease_ = etcdserverpb::Lease::NewStub(channel_);
  watch_ = etcdserverpb::Watch::NewStub(channel_);
  election_ = v3electionpb::Election::NewStub(channel_);
}

ClientCore::~ClientCore() { close(); }

void ClientCore::close() { tracker_->close(); }

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
  return ctx;
}

std::unique_ptr<grpc::ClientContext> ClientCore::stream_context() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  // A member cut off from its raft leader refuses (and later cancels) the stream rather than
  // keeping it open and silent.
  ctx->AddMetadata("hasleader", "true");
  return ctx;
}

void ClientCore::throw_status(const grpc::Status& status, const std::string& what) const {
  const auto ec = to_error_code(status, channel_ready());
  std::string detail = what;
  if (ec == errc::unreachable) detail += ": no connection to " + endpoint_list();
  if (!status.error_message().empty()) detail += ": " + status.error_message();
  throw boost::system::system_error(ec, detail);
}

asio::awaitable<void> ClientCore::connect() {
  if (channel_ready()) co_return;
  if (tracker_->closed()) throw_error(errc::client_closed, "connect");
  // A real request, not a connectivity-state poll: gRPC makes progress on a connection attempt
  // only while some call or completion queue drives it. A serializable count of one key is
  // answered by the member itself, without raft. Any answer, even a refusal, proves the
  // connection; only a missed deadline means no member could be reached.
  etcdserverpb::RangeRequest request;
  request.set_key(std::string(1, '\0'));
  request.set_serializable(true);
  request.set_count_only(true);
  auto ctx = unary_context();
  ctx->set_deadline(std::chrono::system_clock::now() + options_.connect_timeout);
  auto [status, response] = co_await call_status(
      std::move(ctx), kv_->async(), &etcdserverpb::KV::Stub::async::Range, std::move(request));
  const auto code = status.error_code();
  if (code == grpc::StatusCode::DEADLINE_EXCEEDED || code == grpc::StatusCode::UNAVAILABLE) {
    throw_error(errc::unreachable, "connect to " + endpoint_list() + " (waited " +
                                       std::to_string(options_.connect_timeout.count()) +
                                       " ms): " + status.error_message());
  }
  if (code == grpc::StatusCode::CANCELLED) throw_status(status, "connect");
}

}  // namespace detail

Client::Client(executor_type executor, ClientOptions options)
    : core_(std::make_shared<detail::ClientCore>(std::move(executor), std::move(options))) {}

Client::~Client() { core_->close(); }

Client::executor_type Client::get_executor() const { return core_->executor(); }

const ClientOptions& Client::options() const { return core_->options(); }

boost::asio::awaitable<void> Client::connect() { return core_->connect(); }

}  // namespace election
