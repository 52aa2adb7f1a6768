// Links against election the way a user would and runs without an etcd: connecting to a port
// where nothing listens must fail with errc::unreachable after the connect timeout.
// Exit 0 when it does, 1 otherwise.
#include <election/election.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <exception>
#include <iostream>

namespace {

boost::asio::awaitable<bool> connect_fails_unreachable(election::Client& client) {
  try {
    co_await client.connect();
    std::cerr << "package check: connect() succeeded, but nothing listens on 127.0.0.1:1\n";
  } catch (const boost::system::system_error& e) {
    if (e.code() == election::errc::unreachable) {
      std::cout << "package check: connect() failed as expected: " << e.what() << '\n';
      co_return true;
    }
    std::cerr << "package check: connect() failed with the wrong error: " << e.code() << " ("
              << e.what() << ")\n";
  }
  co_return false;
}

}  // namespace

int main() {
  using namespace std::chrono_literals;
  boost::asio::io_context io;
  bool ok = false;
  try {
    // Destroyed before io: the Client must not outlive its io_context.
    election::Client client(io.get_executor(),
                            election::ClientOptions{.endpoints = {"127.0.0.1:1"},
                                                    .connect_timeout = 300ms});
    boost::asio::co_spawn(io, connect_fails_unreachable(client),
                          [&](std::exception_ptr error, bool result) {
                            if (error) {
                              try {
                                std::rethrow_exception(error);
                              } catch (const std::exception& e) {
                                std::cerr << "package check: unexpected exception: " << e.what()
                                          << '\n';
                              }
                              return;
                            }
                            ok = result;
                          });
    io.run_for(30s);
  } catch (const std::exception& e) {
    std::cerr << "package check: " << e.what() << '\n';
    return 1;
  }
  return ok ? 0 : 1;
}
