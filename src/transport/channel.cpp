// What a Client's channel is made of: endpoints parsed into a gRPC target, and gRPC's statuses
// turned into the library's error codes (transport/client_core.hpp declares both).
#include "base/throw.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

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
      // etcd 3.4 sheds load with "too many requests" (its applying lags its commits by more
      // than 5,000 entries) as a plain error: it passes by itself, as RESOURCE_EXHAUSTED does.
      if (has("etcdserver: too many requests"))
        return {static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED), grpc_category()};
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

}  // namespace detail
}  // namespace election
