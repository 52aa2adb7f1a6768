#include "transport/client_core.hpp"

#include <catch2/catch.hpp>

using election::errc;
using election::detail::make_target;

namespace {
boost::system::error_code target_error(std::vector<std::string> endpoints) {
  try {
    make_target(endpoints);
  } catch (const boost::system::system_error& e) {
    return e.code();
  }
  return {};
}
}  // namespace

TEST_CASE("endpoints become one gRPC target over all members", "[endpoints]") {
  CHECK(make_target({"127.0.0.1:2379"}).uri == "ipv4:127.0.0.1:2379");
  CHECK(make_target({"http://127.0.0.1:2379", "127.0.0.1:22379"}).uri ==
        "ipv4:127.0.0.1:2379,127.0.0.1:22379");
  CHECK(make_target({"[::1]:2379"}).uri == "ipv6:[::1]:2379");
  CHECK(make_target({"etcd.example:2379"}).uri == "dns:///etcd.example:2379");
  CHECK(make_target({"localhost:2379", "127.0.0.1:2380"}).uri.starts_with("ipv4:127.0.0.1:2379,"));
}

TEST_CASE("bad endpoints are refused with the endpoint named", "[endpoints]") {
  CHECK(target_error({}) == errc::no_endpoints);
  CHECK(target_error({"127.0.0.1"}) == errc::invalid_endpoint);
  CHECK(target_error({"127.0.0.1:0"}) == errc::invalid_endpoint);
  CHECK(target_error({"127.0.0.1:65536"}) == errc::invalid_endpoint);
  CHECK(target_error({"127.0.0.1:12ab"}) == errc::invalid_endpoint);
  CHECK(target_error({":2379"}) == errc::invalid_endpoint);
  CHECK(target_error({"ftp://127.0.0.1:2379"}) == errc::invalid_endpoint);
  try {
    make_target({"127.0.0.1:2379", "bad-endpoint"});
    FAIL("nothing thrown");
  } catch (const boost::system::system_error& e) {
    CHECK_THAT(e.what(), Catch::Contains("bad-endpoint"));
  }
}
