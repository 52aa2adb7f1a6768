// A minimal HTTP/1.1 server for leader-worker's --metrics: GET a path, get a page, and the
// connection closes. Just enough for a Prometheus scrape and a liveness probe; not a general
// web server (no keep-alive, no request bodies, a request head of at most 8 KiB).
//
//   HttpEndpoint http(executor, "127.0.0.1", 9100, [](std::string_view path) { ... });
//   co_await http.serve();  // until cancelled
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace leader_worker {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpEndpoint {
 public:
  /// Called with the request's path (without a query string) for every GET.
  using Handler = std::function<HttpResponse(std::string_view path)>;

  /// Binds and listens at once. Throws std::runtime_error naming the address when it cannot
  /// (an address that is not an IP literal, the port taken, no permission).
  HttpEndpoint(boost::asio::any_io_executor executor, const std::string& host, std::uint16_t port,
               Handler handler)
      : acceptor_(executor), handler_(std::move(handler)) {
    namespace ip = boost::asio::ip;
    const auto where = host + ":" + std::to_string(port);
    boost::system::error_code ec;
    const auto address = ip::make_address(host, ec);
    if (ec) throw std::runtime_error(where + ": '" + host + "' is not an IP address");
    const ip::tcp::endpoint endpoint(address, port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(ip::tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(ip::tcp::socket::max_listen_connections, ec);
    if (ec) throw std::runtime_error("cannot listen on " + where + ": " + ec.message());
  }

  /// The port listened on (the one given, or the one the system chose for 0).
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

  /// Accepts connections until cancelled; each is served on a coroutine of its own.
  boost::asio::awaitable<void> serve() {
    auto executor = co_await boost::asio::this_coro::executor;
    for (;;) {
      auto socket = co_await acceptor_.async_accept(boost::asio::use_awaitable);
      boost::asio::co_spawn(executor, session(std::move(socket), handler_), boost::asio::detached);
    }
  }

 private:
  static constexpr std::size_t max_head = 8192;

  static const char* reason(int status) {
    switch (status) {
      case 200: return "OK";
      case 400: return "Bad Request";
      case 404: return "Not Found";
      case 405: return "Method Not Allowed";
      case 503: return "Service Unavailable";
      default: return "Error";
    }
  }

  static HttpResponse respond(std::string_view head, const Handler& handler) {
    const auto line_end = head.find("\r\n");
    const auto line = head.substr(0, line_end);
    const auto first_space = line.find(' ');
    const auto second_space = line.find(' ', first_space + 1);
    if (first_space == std::string_view::npos || second_space == std::string_view::npos)
      return {400, "text/plain; charset=utf-8", "bad request\n"};
    const auto method = line.substr(0, first_space);
    auto path = line.substr(first_space + 1, second_space - first_space - 1);
    path = path.substr(0, path.find('?'));
    if (method != "GET" && method != "HEAD")
      return {405, "text/plain; charset=utf-8", "only GET\n"};
    return handler(path);
  }

  static boost::asio::awaitable<void> session(boost::asio::ip::tcp::socket accepted,
                                              Handler handler) {
    namespace asio = boost::asio;
    // Shared with the timer's handler, which may run after this coroutine has ended.
    auto connection = std::make_shared<asio::ip::tcp::socket>(std::move(accepted));
    auto& socket = *connection;
    // A client that sends nothing is not waited for long.
    asio::steady_timer limit(socket.get_executor(), std::chrono::seconds(5));
    limit.async_wait([connection](const boost::system::error_code& ec) {
      if (!ec) {
        boost::system::error_code ignored;
        connection->close(ignored);
      }
    });
    std::string head;
    boost::system::error_code ec;
    co_await asio::async_read_until(socket, asio::dynamic_buffer(head, max_head), "\r\n\r\n",
                                    asio::redirect_error(asio::use_awaitable, ec));
    const auto response = ec ? HttpResponse{400, "text/plain; charset=utf-8", "bad request\n"}
                             : respond(head, handler);
    std::string out = "HTTP/1.1 " + std::to_string(response.status) + " " +
                      reason(response.status) + "\r\nContent-Type: " + response.content_type +
                      "\r\nContent-Length: " + std::to_string(response.body.size()) +
                      "\r\nConnection: close\r\n\r\n";
    if (!head.starts_with("HEAD ")) out += response.body;
    if (socket.is_open())
      co_await asio::async_write(socket, asio::buffer(out),
                                 asio::redirect_error(asio::use_awaitable, ec));
    limit.cancel();
    socket.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  }

  boost::asio::ip::tcp::acceptor acceptor_;
  Handler handler_;
};

}  // namespace leader_worker
