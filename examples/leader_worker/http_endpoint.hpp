// leader-worker's --metrics endpoint: /metrics for Prometheus and /healthz for a liveness probe,
// served over HTTP/1.1 by Boost.Beast. To put your own Leadership's health() behind a Kubernetes
// probe, copy this file: the handler maps a path to a response, and the rest is HTTP.
//
//   HttpEndpoint http(executor, "127.0.0.1", 9100, [](std::string_view path) { ... });
//   co_spawn(executor, http.serve(), detached);  // serves until `http` is destroyed
//
// GET and HEAD only, no request bodies, keep-alive when the client asks for it. Every read and
// write has a time limit, so a client that stalls holds a socket for seconds, not for good.
// Everything runs on the executor given, which must not run on several threads at once: nothing
// here takes a lock.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace leader_worker {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpEndpoint {
 public:
  /// Called with the request's path (without a query string) for every GET and HEAD.
  using Handler = std::function<HttpResponse(std::string_view path)>;

  /// Binds and listens at once, so that a bad --metrics fails at start-up rather than later.
  /// Throws std::runtime_error naming the address when it cannot (an address that is not an IP
  /// literal, the port taken, no permission).
  HttpEndpoint(boost::asio::any_io_executor executor, const std::string& host, std::uint16_t port,
               Handler handler)
      : state_(std::make_shared<State>(executor, std::move(handler))) {
    namespace ip = boost::asio::ip;
    const auto where = host + ":" + std::to_string(port);
    boost::system::error_code ec;
    const auto address = ip::make_address(host, ec);
    if (ec) throw std::runtime_error(where + ": '" + host + "' is not an IP address");
    const ip::tcp::endpoint endpoint(address, port);
    auto& acceptor = state_->acceptor;
    acceptor.open(endpoint.protocol(), ec);
    // A restarted worker can listen again at once, while its old connections sit in TIME_WAIT.
    if (!ec) acceptor.set_option(ip::tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(ip::tcp::socket::max_listen_connections, ec);
    if (ec) throw std::runtime_error("cannot listen on " + where + ": " + ec.message());
  }

  // The handler refers to what its owner holds (the Leadership, the metrics): once the endpoint
  // is gone, it is never called again, even for a request already read. Closing the idle
  // keep-alive connections also lets the program's io_context finish at shutdown instead of
  // waiting out their time limits.
  ~HttpEndpoint() { state_->close(); }
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  /// The port listened on (the one given, or the one the system chose for 0).
  std::uint16_t port() const { return state_->acceptor.local_endpoint().port(); }

  /// Accepts connections, each served on a coroutine of its own, until the endpoint is destroyed.
  boost::asio::awaitable<void> serve() { return accept_loop(state_); }

 private:
  using Stream = boost::beast::tcp_stream;
  using RequestParser = boost::beast::http::request_parser<boost::beast::http::empty_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  // To send each request, and to take each response. An idle keep-alive connection is closed
  // after it too: Prometheus opens another at its next scrape.
  static constexpr auto time_limit = std::chrono::seconds(5);
  // A request line and headers longer than this are answered 400: a scrape or a probe sends far
  // less, and nothing is buffered for a client without bound.
  static constexpr std::uint32_t max_head = 8192;

  // Shared with the coroutines, which can resume after the endpoint is gone (a completion that
  // was already queued when it closed) and must then find it closed, not freed.
  struct State {
    State(boost::asio::any_io_executor executor, Handler h)
        : acceptor(std::move(executor)), handler(std::move(h)) {}

    void close() {
      closed = true;
      boost::system::error_code ignored;
      acceptor.close(ignored);
      for (const auto& connection : connections)
        if (const auto stream = connection.lock()) stream->close();
      connections.clear();
    }

    boost::asio::ip::tcp::acceptor acceptor;
    Handler handler;
    // Weak: a connection ends on its own, and close() only needs the ones still open.
    std::vector<std::weak_ptr<Stream>> connections;
    bool closed = false;
  };

  static boost::asio::awaitable<void> accept_loop(std::shared_ptr<State> state) {
    namespace asio = boost::asio;
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer pause(executor);
    while (!state->closed) {
      boost::system::error_code ec;
      auto socket =
          co_await state->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (state->closed) break;
      if (ec) {
        // Out of file descriptors, say: try again shortly rather than stop answering the probe
        // for the rest of the process's life.
        pause.expires_after(std::chrono::milliseconds(100));
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      auto stream = std::make_shared<Stream>(std::move(socket));
      std::erase_if(state->connections,
                    [](const auto& connection) { return connection.expired(); });
      state->connections.push_back(stream);
      asio::co_spawn(executor, session(state, std::move(stream)), asio::detached);
    }
  }

  // One connection: requests answered in turn until the client closes, asks to close, stalls, or
  // sends something that cannot be parsed.
  static boost::asio::awaitable<void> session(std::shared_ptr<State> state,
                                              std::shared_ptr<Stream> stream) {
    namespace asio = boost::asio;
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;  // kept across requests: a client may pipeline them
    for (;;) {
      RequestParser request;
      request.header_limit(max_head);
      stream->expires_after(time_limit);
      boost::system::error_code ec;
      // Only the head is read: nothing served here takes a body, and respond() refuses one.
      co_await http::async_read_header(*stream, buffer, request,
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (state->closed) co_return;
      if (ec && !malformed(ec)) break;  // gone, or stalled past the time limit
      auto response =
          ec ? make_response({400, "text/plain; charset=utf-8", "bad request\n"}, 11, false, false)
             : respond(request, state->handler);
      stream->expires_after(time_limit);
      co_await http::async_write(*stream, response, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !response.keep_alive()) break;
    }
    // For a client that reads to the end of the stream, as one that sent Connection: close may.
    boost::system::error_code ignored;
    stream->socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  }

  // The request was there but is not HTTP (as opposed to a connection that ended or stalled:
  // those get no answer).
  static bool malformed(const boost::system::error_code& ec) {
    namespace http = boost::beast::http;
    return ec.category() == http::make_error_code(http::error::bad_method).category() &&
           ec != http::error::end_of_stream && ec != http::error::partial_message;
  }

  static Response respond(const RequestParser& parsed, const Handler& handler) {
    namespace http = boost::beast::http;
    const auto& request = parsed.get();
    const bool head = request.method() == http::verb::head;
    // A body the request came with has not been read, so nothing after it on this connection
    // can be: answer, then close.
    const bool keep_alive = request.keep_alive() && parsed.is_done();
    if (request.method() != http::verb::get && !head) {
      auto response = make_response({405, "text/plain; charset=utf-8", "only GET\n"},
                                    request.version(), keep_alive, false);
      response.set(http::field::allow, "GET, HEAD");
      return response;
    }
    if (!parsed.is_done())
      return make_response({400, "text/plain; charset=utf-8", "a request body is not expected\n"},
                           request.version(), false, false);
    const std::string_view target(request.target().data(), request.target().size());
    return make_response(handler(target.substr(0, target.find('?'))), request.version(), keep_alive,
                         head);
  }

  static Response make_response(HttpResponse answer, unsigned version, bool keep_alive, bool head) {
    Response response(static_cast<boost::beast::http::status>(answer.status), version);
    response.set(boost::beast::http::field::content_type, answer.content_type);
    // Beast writes the Connection header that says so for the request's HTTP version.
    response.keep_alive(keep_alive);
    // HEAD: the head a GET would get, Content-Length included, and no body.
    response.content_length(answer.body.size());
    if (!head) response.body() = std::move(answer.body);
    return response;
  }

  std::shared_ptr<State> state_;
};

}  // namespace leader_worker
