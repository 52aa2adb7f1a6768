// The chaos runner's loopback proxy: it forwards, a cut closes what it carried at once and
// blackholes what comes after, and a child process the runner starts cannot keep a closed
// connection open (it would turn the runner's faults into silent connections). With a delay it
// holds bytes back by that much each way, in order, without a limit on throughput, and still
// closes at once.
#include "proxy.hpp"
#include "children.hpp"

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
  explicit Echo(asio::io_context& io)
      : acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
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
  auto result =
      co_await (asio::async_read(socket, asio::buffer(got), asio::as_tuple(asio::use_awaitable)) ||
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

TEST_CASE("proxy: forwards both ways until cut and a cut connection is closed at once") {
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

// --- set_delay: latency each way, order kept, no limit on throughput -------------------------

namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

// Sends `text` and reads its echo (throws if it does not come back whole): how long that took.
asio::awaitable<std::chrono::milliseconds> round_trip(tcp::socket& socket,
                                                      const std::string& text) {
  const auto start = Clock::now();
  std::string echoed;
  // Sent and read at once: a large text is echoed while it is still being sent.
  const auto outcome =
      co_await (send(socket, text) && read_within(socket, echoed, text.size(), 5000ms));
  if (outcome != Outcome::data || echoed != text)
    throw std::runtime_error("the echo did not come back whole");
  co_return since(start);
}

}  // namespace

TEST_CASE("proxy: with a delay each way, a round trip takes twice that") {
  asio::io_context io;
  Echo echo(io);
  chaos::Proxy proxy(io.get_executor(), echo.endpoint());
  std::chrono::milliseconds took{};
  run(io, [&]() -> asio::awaitable<void> {
    proxy.set_delay(300ms);
    auto socket = co_await connect_to(proxy.port());
    took = co_await round_trip(socket, "ping");
  });
  CHECK(proxy.delay() == 300ms);
  CHECK(took >= 600ms);
  CHECK(took < 900ms);
}

TEST_CASE("proxy: each direction can have a delay of its own") {
  asio::io_context io;
  Echo echo(io);
  chaos::Proxy proxy(io.get_executor(), echo.endpoint());
  std::chrono::milliseconds took{};
  run(io, [&]() -> asio::awaitable<void> {
    proxy.set_delays(0ms, 400ms);  // requests at once, answers late
    auto socket = co_await connect_to(proxy.port());
    took = co_await round_trip(socket, "ping");
  });
  CHECK(proxy.delay() == 0ms);
  CHECK(took >= 400ms);
  CHECK(took < 700ms);
}

TEST_CASE("proxy: a delay keeps the order of many small writes, also when it changes") {
  asio::io_context io;
  Echo echo(io);
  chaos::Proxy proxy(io.get_executor(), echo.endpoint());
  std::string sent, got;
  Outcome outcome{};
  run(io, [&]() -> asio::awaitable<void> {
    proxy.set_delay(300ms);
    auto socket = co_await connect_to(proxy.port());
    asio::steady_timer pause(socket.get_executor());
    for (int i = 0; i < 200; ++i) {
      // Bytes read after the change are due sooner, yet must not pass those queued before it.
      if (i == 100) proxy.set_delay(0ms);
      const auto text = std::to_string(i) + ";";
      sent += text;
      co_await send(socket, text);
      if (i % 10 == 0) {  // a little time now and then, so the proxy reads them apart
        pause.expires_after(1ms);
        co_await pause.async_wait(asio::use_awaitable);
      }
    }
    outcome = co_await read_within(socket, got, sent.size(), 3000ms);
  });
  CHECK(outcome == Outcome::data);
  CHECK(got == sent);
}

TEST_CASE("proxy: a large burst through a delay arrives one delay later, not one per chunk") {
  asio::io_context io;
  Echo echo(io);
  chaos::Proxy proxy(io.get_executor(), echo.endpoint());
  std::chrono::milliseconds took{};
  run(io, [&]() -> asio::awaitable<void> {
    proxy.set_delay(300ms);
    auto socket = co_await connect_to(proxy.port());
    std::string burst(1 << 20, '\0');
    for (std::size_t i = 0; i < burst.size(); ++i) burst[i] = static_cast<char>('a' + i % 23);
    // 64 chunks of 16 KiB each way at least (the echo server's are 1 KiB).
    took = co_await round_trip(socket, burst);
  });
  CHECK(took >= 600ms);
  // A delay per chunk would be 64 x 300 ms each way; the margin is for echoing 1 MiB in 1 KiB
  // pieces under the sanitizers on a busy machine.
  CHECK(took < 1200ms);
}

TEST_CASE("proxy: set_delay(0) on an open connection passes bytes on undelayed again") {
  asio::io_context io;
  Echo echo(io);
  chaos::Proxy proxy(io.get_executor(), echo.endpoint());
  std::chrono::milliseconds slow{}, fast{};
  run(io, [&]() -> asio::awaitable<void> {
    auto socket = co_await connect_to(proxy.port());
    proxy.set_delay(300ms);
    slow = co_await round_trip(socket, "slow");
    proxy.set_delay(0ms);
    fast = co_await round_trip(socket, "fast");
  });
  CHECK(slow >= 600ms);
  CHECK(fast < 200ms);
}

TEST_CASE("proxy: a cut closes a delayed connection at once and drops what it held") {
  asio::io_context io;
  Echo echo(io);
  chaos::Proxy proxy(io.get_executor(), echo.endpoint());
  std::string got;
  Outcome after_cut{};
  std::chrono::milliseconds closed_after{};
  run(io, [&]() -> asio::awaitable<void> {
    proxy.set_delay(300ms);
    auto socket = co_await connect_to(proxy.port());
    co_await send(socket, "ping");
    asio::steady_timer queued(socket.get_executor(), 100ms);  // "ping" waits in the proxy
    co_await queued.async_wait(asio::use_awaitable);
    const auto cut_at = Clock::now();
    proxy.cut();
    after_cut = co_await read_within(socket, got, 1, 2000ms);
    closed_after = since(cut_at);
  });
  CHECK(after_cut == Outcome::closed);
  CHECK(closed_after < 100ms);
}

TEST_CASE("proxy: one side closing a delayed connection closes the other at once") {
  asio::io_context io;
  // An upstream of the test's own, to see what the proxy does to its side.
  tcp::acceptor upstream(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  chaos::Proxy proxy(io.get_executor(), upstream.local_endpoint());
  std::string got;
  Outcome upstream_saw{};
  std::chrono::milliseconds closed_after{};
  run(io, [&]() -> asio::awaitable<void> {
    proxy.set_delay(300ms);
    auto client = co_await connect_to(proxy.port());
    auto far = co_await upstream.async_accept(asio::use_awaitable);
    co_await send(client, "bye");
    const auto closed_at = Clock::now();
    client.close();  // "bye" is still queued in the proxy: dropped with the connection
    upstream_saw = co_await read_within(far, got, 1, 2000ms);
    closed_after = since(closed_at);
  });
  CHECK(upstream_saw == Outcome::closed);
  CHECK(closed_after < 100ms);
}
