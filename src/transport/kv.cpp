#include "transport/kv.hpp"

namespace election::detail {

etcdserverpb::TxnRequest signed_resignation(const std::string& election, const std::string& key,
                                            std::int64_t create_revision, std::int64_t lease) {
  auto request = guarded_by(key, create_revision);
  request.add_success()->mutable_request_delete_range()->set_key(key);
  auto* sign = request.add_success()->mutable_request_put();
  sign->set_key(resignation_key(election, lease));
  sign->set_value(std::to_string(create_revision));
  sign->set_lease(lease);
  return request;
}

etcdserverpb::TxnRequest guarded_by(const std::string& key, std::int64_t revision) {
  etcdserverpb::TxnRequest request;
  auto* compare = request.add_compare();
  compare->set_result(etcdserverpb::Compare::EQUAL);
  compare->set_target(etcdserverpb::Compare::CREATE);
  compare->set_key(key);
  compare->set_create_revision(revision);
  return request;
}

void put_candidate(etcdserverpb::TxnRequest& request, const std::string& key,
                   const std::string& value, std::int64_t lease) {
  auto* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
}

boost::asio::awaitable<etcdserverpb::RangeResponse> range(ClientCore& core, std::string key,
                                                          std::string range_end) {
  etcdserverpb::RangeRequest request;
  request.set_key(std::move(key));
  request.set_range_end(std::move(range_end));
  return core.call_retrying("range", core.kv().async(), &etcdserverpb::KV::Stub::async::Range,
                            std::move(request));
}

boost::asio::awaitable<void> revoke_lease(ClientCore& core, std::int64_t lease, bool linger) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  try {
    co_await core.call_retrying("lease revoke", core.lease().async(),
                                &etcdserverpb::Lease::Stub::async::LeaseRevoke, std::move(request),
                                linger);
  } catch (const boost::system::system_error& e) {
    if (e.code() != errc::lease_expired) throw;  // already gone: that is what we wanted
  }
}

boost::asio::awaitable<void> delete_key(ClientCore& core, std::string key, bool linger) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(std::move(key));
  co_await core.call_retrying("delete", core.kv().async(),
                              &etcdserverpb::KV::Stub::async::DeleteRange, std::move(request),
                              linger);
}

}  // namespace election::detail
