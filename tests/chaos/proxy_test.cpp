// The chaos runner's loopback proxy: it forwards, a cut closes what it carried at once and
// blackholes what comes after, and a child process the runner starts cannot keep a closed
// connection open (it would turn the runner's faults into silent connections).
#include "children.hpp"
#include "proxy.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

// An echo server on a free loopback port: what the proxy forwards to.
class Echo {
 public:
  explicit Echo(asio::io_context& io) : acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
    asio::co_spawn(io, accept_loop(), asio::detached);
  }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  void close() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      asio::co_spawn(acceptor_.get_executor(), echo(std::move(socket)), asio::detached);
    }
  }
  static asio::awaitable<void> echo(tcp::socket socket) {
    std::array<char, 1024> buffer;
    for (;;) {
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(buffer),
                                                     asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      auto [wec, written] = co_await asio::async_write(socket, asio::buffer(buffer.data(), n),
                                                       asio::as_tuple(asio::use_awaitable));
      if (wec) co_return;
    }
  }
  tcp::acceptor acceptor_;
};

enum class Outcome { data, closed, silent };

// Reads `want` bytes from `socket` within `limit`: what came of it, and the bytes.
asio::awaitable<Outcome> read_within(tcp::socket& socket, std::string& got, std::size_t want,
                                     std::chrono::milliseconds limit) {
  got.assign(want, '\0');
  asio::steady_timer timer(socket.get_executor(), limit);
  auto result = co_await (asio::async_read(socket, asio::buffer(got),
                                           asio::as_tuple(asio::use_awaitable)) ||
                          timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (result.index() == 1) co_return Outcome::silent;
  const auto [ec, n] = std::get<0>(result);
  if (ec) co_return Outcome::closed;
  got.resize(n);
  co_return Outcome::data;
}

asio::awaitable<tcp::socket> connect_to(std::uint16_t port) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(tcp::endpoint(asio::ip::address_v4::loopback(), port),
                                asio::use_awaitable);
  co_return socket;
}

asio::awaitable<void> send(tcp::socket& socket, const std::string& text) {
  co_await asio::async_write(socket, asio::buffer(text), asio::use_awaitable);
}

template <typename Body>
void run(asio::io_context& io, Body body) {
  std::exception_ptr failure;
  bool done = false;
  asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
    failure = e;
    done = true;
    io.stop();  // the accept loops would keep it running
  });
  io.run_for(20s);
  REQUIRE(done);
  if (failure) std::rethrow_exception(failure);
}

}  // namespace

TEST_CASE("proxy: forwards both ways until cut; a cut connection is closed at once") {
  asio::io_context io;
  Echo echo(io);
  chaos::Proxy proxy(io.get_executor(), echo.endpoint());
  chaos::Children children;
  std::string before, after;
  Outcome forwarded{}, cut{};
  run(io, [&]() -> asio::awaitable<void> {
    auto socket = co_await connect_to(proxy.port());
    co_await send(socket, "ping");
    forwarded = co_await read_within(socket, before, 4, 2000ms);
    // A process started while the connection is open, as the runner starts workers and etcd
    // members all the time; it must not hold the proxy's end of the connection.
    children.spawn({"/bin/sleep", "10"}, {}, true);
    proxy.cut();
    cut = co_await read_within(socket, after, 1, 2000ms);
  });
  children.kill_all();
  CHECK(forwarded == Outcome::data);
  CHECK(before == "ping");
  CHECK(cut == Outcome::closed);
}

TEST_CASE("proxy: while cut, new connections are held open and nothing is forwarded") {
  asio::io_context io;
  Echo echo(io);
  chaos::Proxy proxy(io.get_executor(), echo.endpoint());
  std::string held, healed;
  Outcome while_cut{}, after_heal{};
  run(io, [&]() -> asio::awaitable<void> {
    proxy.cut();
    auto socket = co_await connect_to(proxy.port());
    co_await send(socket, "ping");
    while_cut = co_await read_within(socket, held, 4, 500ms);
    proxy.heal();  // drops what it held: the connection was never forwarded
    after_heal = co_await read_within(socket, healed, 1, 2000ms);
    auto again = co_await connect_to(proxy.port());
    co_await send(again, "pong");
    std::string echoed;
    const auto outcome = co_await read_within(again, echoed, 4, 2000ms);
    if (outcome != Outcome::data || echoed != "pong")
      throw std::runtime_error("a healed proxy does not forward");
  });
  CHECK(while_cut == Outcome::silent);
  CHECK(after_heal == Outcome::closed);
}

TEST_CASE("proxy: a connection the upstream refuses is closed, not left hanging") {
  asio::io_context io;
  auto echo = std::make_unique<Echo>(io);
  const auto upstream = echo->endpoint();
  chaos::Proxy proxy(io.get_executor(), upstream);
  std::string got;
  Outcome refused{};
  run(io, [&]() -> asio::awaitable<void> {
    echo->close();  // nothing listens there any more: the proxy's upstream connect is refused
    auto socket = co_await connect_to(proxy.port());
    refused = co_await read_within(socket, got, 1, 2000ms);
  });
  CHECK(refused == Outcome::closed);
}
