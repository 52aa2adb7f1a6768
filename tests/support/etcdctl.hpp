// etcdctl against one endpoint, and the reads of raw keys the tests make beside the library's
// own: one copy for every test that needs them.
#pragma once

#include "api/access.hpp"
#include "election/client.hpp"
#include "transport/client_core.hpp"
#include "transport/kv.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace election::test {

/// Runs `etcdctl --endpoints=ENDPOINT ARGS` (API 3), its output discarded; its exit status.
inline int etcdctl(const std::string& endpoint, const std::string& args) {
  const auto command =
      "ETCDCTL_API=3 etcdctl --endpoints=" + endpoint + " " + args + " >/dev/null 2>&1";
  return std::system(command.c_str());
}

/// The same, returning what it printed on stdout (empty when it could not run).
inline std::string etcdctl_output(const std::string& endpoint, const std::string& args) {
  const auto command = "ETCDCTL_API=3 etcdctl --endpoints=" + endpoint + " " + args + " 2>/dev/null";
  std::string out;
  if (std::FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
    ::pclose(pipe);
  }
  return out;
}

/// "127.0.0.1:2379" as a TCP endpoint (the chaos proxy's target).
inline boost::asio::ip::tcp::endpoint tcp_endpoint(const std::string& host_port) {
  const auto colon = host_port.rfind(':');
  return {boost::asio::ip::make_address(host_port.substr(0, colon)),
          static_cast<unsigned short>(std::stoi(host_port.substr(colon + 1)))};
}

/// The keys etcd holds in [key, range_end), read through `client` (keys may hold NUL bytes,
/// which etcdctl cannot be given).
inline boost::asio::awaitable<etcdserverpb::RangeResponse> raw_range(Client& client,
                                                                     std::string key,
                                                                     std::string range_end) {
  auto& core = *::election::detail::access::core(client);
  co_return co_await ::election::detail::range(core, std::move(key), std::move(range_end));
}

/// The resignations' signatures etcd holds for `election` (`NAME0\0<lease>`).
inline boost::asio::awaitable<int> signatures_of(Client& client, const std::string& election) {
  auto reply = co_await raw_range(client, election + std::string("0\0", 2),
                                  ::election::detail::resignations_end(election));
  co_return static_cast<int>(reply.kvs_size());
}

/// The candidates' keys etcd holds for `election` (`NAME/...`).
inline boost::asio::awaitable<std::vector<std::string>> keys_of(Client& client,
                                                                const std::string& election) {
  const auto prefix = election + "/";
  auto reply = co_await raw_range(client, prefix, ::election::detail::prefix_end(prefix));
  std::vector<std::string> keys;
  for (const auto& kv : reply.kvs()) keys.push_back(kv.key());
  co_return keys;
}

}  // namespace election::test
