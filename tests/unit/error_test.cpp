#include "election/error.hpp"
#include "base/throw.hpp"
#include "transport/client_core.hpp"

#include <fstream>
#include <regex>
#include <sstream>

#include <boost/asio/error.hpp>
#include <catch2/catch.hpp>

using election::errc;
using election::detail::to_error_code;

TEST_CASE("every errc has its own sentence in the election category", "[errors]") {
  std::set<std::string> messages;
  for (int e = static_cast<int>(errc::no_endpoints); e <= static_cast<int>(errc::lock_held);
       ++e) {
    const boost::system::error_code ec = static_cast<errc>(e);
    CHECK(std::string(ec.category().name()) == "election");
    CHECK(ec.message().back() == '.');
    messages.insert(ec.message());
  }
  CHECK(messages.size() == static_cast<std::size_t>(errc::lock_held));
}

TEST_CASE("gRPC statuses map to what they mean for etcd", "[errors]") {
  using grpc::Status;
  using grpc::StatusCode;
  CHECK(to_error_code(Status(StatusCode::NOT_FOUND, "etcdserver: requested lease not found"),
                      true) == errc::lease_expired);
  CHECK(to_error_code(Status(StatusCode::OUT_OF_RANGE, "etcdserver: too large lease TTL"), true) ==
        errc::ttl_refused);
  CHECK(to_error_code(Status(StatusCode::OUT_OF_RANGE,
                             "etcdserver: mvcc: required revision has been compacted"),
                      true) == errc::compacted);
  CHECK(to_error_code(Status(StatusCode::UNKNOWN, "election: not leader"), true) ==
        errc::not_leader);
  CHECK(to_error_code(Status(StatusCode::UNKNOWN, "election: no leader"), true) == errc::no_leader);
  CHECK(to_error_code(Status(StatusCode::INVALID_ARGUMENT, "etcdserver: request is too large"),
                      true) == errc::value_too_large);
  CHECK(to_error_code(Status(StatusCode::UNAUTHENTICATED, "etcdserver: invalid auth token"),
                      true) == errc::auth_failed);
  CHECK(to_error_code(Status(StatusCode::INVALID_ARGUMENT,
                             "etcdserver: authentication failed, invalid user ID or password"),
                      true) == errc::auth_failed);
  CHECK(to_error_code(Status(StatusCode::UNKNOWN, "etcdserver: permission denied"), true) ==
        errc::permission_denied);
  CHECK(to_error_code(Status(StatusCode::UNKNOWN, "etcdserver: user name is empty"), true) ==
        errc::auth_failed);
  CHECK(to_error_code(Status(StatusCode::CANCELLED, "Cancelled"), true) ==
        boost::asio::error::operation_aborted);
  // etcd 3.4 under load: passes by itself, retried like any transient failure.
  CHECK(election::is_transient(
      to_error_code(Status(StatusCode::UNKNOWN, "etcdserver: too many requests"), true)));
  CHECK(to_error_code(Status(StatusCode::DEADLINE_EXCEEDED, ""), false) == errc::unreachable);
  CHECK(to_error_code(Status(StatusCode::DEADLINE_EXCEEDED, ""), true) == errc::timeout);
  const auto other =
      to_error_code(Status(StatusCode::UNAVAILABLE, "etcdserver: leader changed"), true);
  CHECK(other.category() == election::grpc_category());
  CHECK(other.value() == static_cast<int>(StatusCode::UNAVAILABLE));
}

TEST_CASE("a thrown error says what was done, and keeps the server's message apart", "[errors]") {
  try {
    election::throw_error(errc::ttl_refused, "lease grant: TTL 0 s");
    FAIL("nothing thrown");
  } catch (const election::error& e) {
    CHECK(e.code() == errc::ttl_refused);
    CHECK_THAT(e.what(), Catch::Contains("lease grant: TTL 0 s"));
    CHECK_THAT(e.what(), Catch::Contains("refused the requested lease TTL"));
    CHECK(e.server_message().empty());  // the library's own failure
  }
  election::detail::ClientCore core(boost::asio::system_executor(), {.endpoints = {"127.0.0.1:1"}});
  try {
    core.throw_status(
        grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "etcdserver: permission denied"),
        "campaign");
    FAIL("nothing thrown");
  } catch (const election::error& e) {
    CHECK(e.code() == errc::permission_denied);
    CHECK_THAT(e.what(), Catch::StartsWith("campaign: etcdserver: permission denied"));
    CHECK(e.server_message() == "etcdserver: permission denied");
  }
}

TEST_CASE("each errc's sentence in error.hpp is its message()", "[errors]") {
  std::ifstream header(ELECTION_SOURCE_DIR "/include/election/error.hpp");
  REQUIRE(header);
  std::stringstream text;
  text << header.rdbuf();
  // A value's sentence is the `///` comment lines right above it, joined by spaces.
  std::map<std::string, std::string> documented;
  std::istringstream lines(text.str());
  std::string sentence;
  const std::regex comment(R"(^\s*///\s?(.*)$)"), value(R"(^\s*([a-z_]+)(\s*=\s*1)?,\s*$)");
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, comment)) {
      if (!sentence.empty()) sentence += ' ';
      sentence += m[1].str();
    } else {
      if (std::regex_match(line, m, value) && !sentence.empty()) documented[m[1]] = sentence;
      sentence.clear();
    }
  }
  int checked = 0;
  for (int e = static_cast<int>(errc::no_endpoints); e <= static_cast<int>(errc::lock_held);
       ++e) {
    const boost::system::error_code ec = static_cast<errc>(e);
    bool found = false;  // (the enum's own comment above `enum class errc` is not a value's)
    for (const auto& [name, sentence] : documented)
      if (sentence == ec.message()) found = true;
    INFO("errc value " << e << ": " << ec.message());
    CHECK(found);
    ++checked;
  }
  CHECK(checked == static_cast<int>(documented.size()));
}
