#include "kv.hpp"

#include <cstdio>

namespace election::detail {

std::string candidate_key(const std::string& election, std::int64_t lease) {
  char hex[24];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(lease));
  return election + "/" + hex;
}

boost::asio::awaitable<etcdserverpb::RangeResponse> range(ClientCore& core, std::string key,
                                                          std::string range_end) {
  etcdserverpb::RangeRequest request;
  request.set_key(std::move(key));
  request.set_range_end(std::move(range_end));
  return core.call_retrying("range", core.kv().async(), &etcdserverpb::KV::Stub::async::Range,
                            std::move(request));
}

boost::asio::awaitable<void> revoke_lease(ClientCore& core, std::int64_t lease) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  try {
    co_await core.call_retrying("lease revoke", core.lease().async(),
                                &etcdserverpb::Lease::Stub::async::LeaseRevoke, std::move(request));
  } catch (const boost::system::system_error& e) {
    if (e.code() != errc::lease_expired) throw;  // already gone: that is what we wanted
  }
}

}  // namespace election::detail
