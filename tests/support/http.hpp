// A blocking HTTP/1.1 GET on loopback, for the tests that scrape leader-worker and ask a
// Prometheus server: status, headers and body, within a time limit.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace election::test {

struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;
};

/// GET http://127.0.0.1:PORT/TARGET; nothing (no exception) when the server cannot be reached
/// or does not answer within `limit`.
inline std::optional<HttpReply> http_get(std::uint16_t port, const std::string& target,
                                         std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  std::string received;
  bool failed = false;
  const std::string request = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" +
                              std::to_string(port) + "\r\nConnection: close\r\n\r\n";
  socket.async_connect({asio::ip::make_address("127.0.0.1"), port}, [&](boost::system::error_code ec) {
    if (ec) {
      failed = true;
      return;
    }
    asio::async_write(socket, asio::buffer(request), [&](boost::system::error_code ec, std::size_t) {
      if (ec) {
        failed = true;
        return;
      }
      // Connection: close: the answer ends where the stream does.
      asio::async_read(socket, asio::dynamic_buffer(received),
                       [&](boost::system::error_code ec, std::size_t) {
                         if (ec && ec != asio::error::eof) failed = true;
                       });
    });
  });
  io.run_for(limit);
  if (!io.stopped() || failed) return std::nullopt;
  const auto head_end = received.find("\r\n\r\n");
  if (head_end == std::string::npos || received.compare(0, 9, "HTTP/1.1 ") != 0) return std::nullopt;
  HttpReply reply;
  reply.status = std::stoi(received.substr(9, 3));
  reply.headers = received.substr(0, head_end);
  reply.body = received.substr(head_end + 4);
  return reply;
}

/// A loopback TCP port nothing listens on now (the system's pick; another program could take
/// it before it is used, which no test here races with).
inline std::uint16_t free_port() {
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

}  // namespace election::test
