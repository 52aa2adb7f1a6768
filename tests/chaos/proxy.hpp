// A loopback TCP proxy the chaos runner controls, to cut one worker off from etcd and heal it.
//
// Each worker's --endpoints name its own proxies, one per etcd member. cut() closes every
// connection and then blackholes new ones: they are accepted and held open, but nothing is read
// or forwarded, as when a network drops packets (gRPC sees connects that never finish, not a
// quick refusal). heal() closes the held connections and forwards again.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <cstdint>
#include <list>
#include <memory>

namespace chaos {

namespace asio = boost::asio;
using asio::ip::tcp;

class Proxy {
 public:
  Proxy(asio::any_io_executor executor, tcp::endpoint target)
      : executor_(std::move(executor)),
        target_(std::move(target)),
        acceptor_(executor_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
    asio::co_spawn(executor_, accept_loop(), asio::detached);
  }
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;
  ~Proxy() { close(); }

  std::uint16_t port() const { return port_; }
  bool is_cut() const { return cut_; }

  void cut() {
    cut_ = true;
    drop_all();
  }

  void heal() {
    cut_ = false;
    drop_all();
  }

  void close() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    drop_all();
  }

 private:
  struct Link {
    explicit Link(asio::any_io_executor executor) : down(executor), up(executor) {}
    void close() {
      boost::system::error_code ignored;
      down.close(ignored);
      up.close(ignored);
    }
    tcp::socket down;  // from the worker
    tcp::socket up;    // to etcd
  };
  using LinkPtr = std::shared_ptr<Link>;

  void drop_all() {
    for (auto& link : links_) link->close();
    links_.clear();
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto link = std::make_shared<Link>(executor_);
      boost::system::error_code ec;
      co_await acceptor_.async_accept(link->down, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (!acceptor_.is_open()) co_return;
        continue;
      }
      forget_closed();
      links_.push_back(link);
      // Blackholed: held open, never read, until heal() or close() drops it.
      if (!cut_) asio::co_spawn(executor_, serve(link), asio::detached);
    }
  }

  void forget_closed() {
    links_.remove_if([](const LinkPtr& link) { return !link->down.is_open(); });
  }

  asio::awaitable<void> serve(LinkPtr link) {
    boost::system::error_code ec;
    co_await link->up.async_connect(target_, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !link->down.is_open()) {
      link->close();
      co_return;
    }
    asio::co_spawn(executor_, pump(link, &Link::down, &Link::up), asio::detached);
    co_await pump(link, &Link::up, &Link::down);
  }

  // Copies one direction until either side fails; then closes both, so the peer notices.
  static asio::awaitable<void> pump(LinkPtr link, tcp::socket Link::*from, tcp::socket Link::*to) {
    std::array<char, 16384> buffer;
    boost::system::error_code ec;
    for (;;) {
      const auto n =
          co_await ((*link).*from)
              .async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      co_await asio::async_write((*link).*to, asio::buffer(buffer.data(), n),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    link->close();
  }

  asio::any_io_executor executor_;
  tcp::endpoint target_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = acceptor_.local_endpoint().port();
  std::list<LinkPtr> links_;  // held here too: a blackholed link has no coroutine
  bool cut_ = false;
};

}  // namespace chaos
