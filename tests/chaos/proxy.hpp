// A loopback TCP proxy the chaos runner controls, to cut one worker off from etcd and heal it,
// or to put it at the far end of a slow link.
//
// Each worker's --endpoints name its own proxies, one per etcd member. cut() closes every
// connection and then blackholes new ones: they are accepted and held open, but nothing is read
// or forwarded, as when a network drops packets (gRPC sees connects that never finish, not a
// quick refusal). heal() closes the held connections and forwards again.
//
// set_delay(d) holds every byte back by d in each direction, as a long link would (set_delays
// gives each direction its own: a link whose answers come late while requests arrive at once,
// as when a renewal reaches etcd and its answer sits in a slow path back): each chunk
// read is stamped with its arrival and written out at arrival + d, in order, by a writer per
// direction (a queue and a timer), while the reader goes on reading. So the delay adds latency,
// not a limit on throughput: a 1 MiB burst arrives d later, not d per chunk. A change applies
// to the bytes read after it, on open connections too (bytes already queued keep their time,
// and later bytes never overtake them). Closing either side still closes both at once and drops
// what was queued, so a cut connection is closed at once whatever the delay.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace chaos {

namespace asio = boost::asio;
using asio::ip::tcp;

class Proxy {
 public:
  Proxy(asio::any_io_executor executor, tcp::endpoint target)
      : state_(std::make_shared<State>(std::move(executor), std::move(target))) {
    asio::co_spawn(state_->executor, accept_loop(state_), asio::detached);
  }
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;
  ~Proxy() { close(); }

  std::uint16_t port() const { return state_->port; }
  bool is_cut() const { return state_->cut; }

  /// Holds every byte read from now on back by `each_way` before it is passed on, in both
  /// directions; 0 (the default) passes bytes on as they come. Negative counts as 0.
  void set_delay(std::chrono::milliseconds each_way) { set_delays(each_way, each_way); }
  /// Holds bytes on their way to etcd back by `to_etcd`, and bytes on their way back by
  /// `from_etcd`. Negative counts as 0.
  void set_delays(std::chrono::milliseconds to_etcd, std::chrono::milliseconds from_etcd) {
    state_->delay->to_etcd = std::max(to_etcd, std::chrono::milliseconds::zero());
    state_->delay->from_etcd = std::max(from_etcd, std::chrono::milliseconds::zero());
  }
  /// The delay towards etcd (set_delay sets both directions alike).
  std::chrono::milliseconds delay() const { return state_->delay->to_etcd; }

  void cut() {
    state_->cut = true;
    state_->drop_all();
  }

  void heal() {
    state_->cut = false;
    state_->drop_all();
  }

  void close() {
    boost::system::error_code ignored;
    state_->acceptor.close(ignored);
    state_->drop_all();
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Delays {
    std::chrono::milliseconds to_etcd{0};
    std::chrono::milliseconds from_etcd{0};
  };
  using Delay = std::shared_ptr<Delays>;

  // Bytes read from one side, due at the other at `due`.
  struct Chunk {
    Clock::time_point due;
    std::string bytes;
  };

  // One direction of a link: what was read and is not written yet, oldest first.
  struct Flow {
    explicit Flow(const asio::any_io_executor& executor) : wake(executor), space(executor) {}
    void drop() {
      queue.clear();
      queued = 0;
      wake.cancel();
      space.cancel();
    }
    std::deque<Chunk> queue;
    std::size_t queued = 0;    // bytes in `queue`
    asio::steady_timer wake;   // the writer waits on it: for the head to be due, or for a chunk
    asio::steady_timer space;  // the reader waits on it while the queue is full
  };

  // Only a bound on memory (a reader of a stopped process's connection would queue forever):
  // at 300 ms each way it still lets 50 MiB/s through.
  static constexpr std::size_t max_queued = 16 << 20;

  struct Link {
    Link(const asio::any_io_executor& executor, Delay delay)
        : down(executor),
          up(executor),
          to_up(executor),
          to_down(executor),
          delay(std::move(delay)) {}
    void close() {
      closed = true;
      boost::system::error_code ignored;
      down.close(ignored);
      up.close(ignored);
      to_up.drop();
      to_down.drop();
    }
    tcp::socket down;  // from the worker
    tcp::socket up;    // to etcd
    Flow to_up;        // read from `down`, to be written to `up`
    Flow to_down;      // read from `up`, to be written to `down`
    Delay delay;       // the proxy's setting, shared: a link may outlive its proxy
    bool closed = false;
  };
  using LinkPtr = std::shared_ptr<Link>;

  // What the accept loop and the links' coroutines share with the Proxy: they may still run after
  // the Proxy is gone (a pending accept completes, aborted, once the acceptor is closed), so they
  // hold this, never the Proxy.
  struct State {
    State(asio::any_io_executor ex, tcp::endpoint to)
        : executor(std::move(ex)),
          target(std::move(to)),
          acceptor(executor, tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
          port(acceptor.local_endpoint().port()) {}
    void drop_all() {
      for (auto& link : links) link->close();
      links.clear();
    }
    void forget_closed() {
      links.remove_if([](const LinkPtr& link) { return !link->down.is_open(); });
    }
    asio::any_io_executor executor;
    tcp::endpoint target;
    tcp::acceptor acceptor;
    std::uint16_t port;
    std::list<LinkPtr> links;  // held here too: a blackholed link has no coroutine
    bool cut = false;
    Delay delay = std::make_shared<Delays>();
  };
  using StatePtr = std::shared_ptr<State>;

  static asio::awaitable<void> accept_loop(StatePtr state) {
    for (;;) {
      auto link = std::make_shared<Link>(state->executor, state->delay);
      boost::system::error_code ec;
      co_await state->acceptor.async_accept(link->down,
                                            asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (!state->acceptor.is_open()) co_return;
        continue;
      }
      state->forget_closed();
      state->links.push_back(link);
      // Blackholed: held open, never read, until heal() or close() drops it.
      if (!state->cut) asio::co_spawn(state->executor, serve(state, link), asio::detached);
    }
  }

  static asio::awaitable<void> serve(StatePtr state, LinkPtr link) {
    boost::system::error_code ec;
    co_await link->up.async_connect(state->target, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || link->closed) {
      link->close();
      co_return;
    }
    const auto& ex = state->executor;
    asio::co_spawn(ex, read(link, &Link::down, &Link::to_up, &Delays::to_etcd), asio::detached);
    asio::co_spawn(ex, write(link, &Link::to_up, &Link::up), asio::detached);
    asio::co_spawn(ex, read(link, &Link::up, &Link::to_down, &Delays::from_etcd), asio::detached);
    asio::co_spawn(ex, write(link, &Link::to_down, &Link::down), asio::detached);
  }

  // Reads one side into its flow, each chunk due at its arrival + the delay, until that side
  // fails or the link is closed; then closes both sides, so the peer notices.
  static asio::awaitable<void> read(LinkPtr link, tcp::socket Link::*from, Flow Link::*into,
                                    std::chrono::milliseconds Delays::*delay) {
    std::array<char, 16384> buffer;
    auto& flow = (*link).*into;
    boost::system::error_code ec;
    for (;;) {
      const auto n =
          co_await ((*link).*from)
              .async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
      if (ec || link->closed) break;
      const bool was_empty = flow.queue.empty();
      flow.queue.push_back({Clock::now() + (*link->delay).*delay, std::string(buffer.data(), n)});
      flow.queued += n;
      if (was_empty) flow.wake.cancel();  // the writer waits for a chunk
      while (flow.queued >= max_queued && !link->closed) {
        flow.space.expires_at(Clock::time_point::max());
        co_await flow.space.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      if (link->closed) break;
    }
    link->close();
  }

  // Writes a flow's chunks to the other side as they fall due, every chunk due by then in one
  // write, until that side fails or the link is closed; then closes both sides.
  static asio::awaitable<void> write(LinkPtr link, Flow Link::*from, tcp::socket Link::*to) {
    auto& flow = (*link).*from;
    boost::system::error_code ec;
    std::vector<std::string> batch;
    std::vector<asio::const_buffer> buffers;
    while (!link->closed) {
      const auto now = Clock::now();
      if (flow.queue.empty() || flow.queue.front().due > now) {
        flow.wake.expires_at(flow.queue.empty() ? Clock::time_point::max()
                                                : flow.queue.front().due);
        co_await flow.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;  // due, a chunk came, or the link closed
      }
      // Moved out of the queue first: close() may drop the queue while the write is under way.
      batch.clear();
      buffers.clear();
      while (!flow.queue.empty() && flow.queue.front().due <= now) {
        flow.queued -= flow.queue.front().bytes.size();
        batch.push_back(std::move(flow.queue.front().bytes));
        flow.queue.pop_front();
      }
      for (const auto& bytes : batch) buffers.push_back(asio::buffer(bytes));
      if (flow.queued < max_queued) flow.space.cancel();
      co_await asio::async_write((*link).*to, buffers,
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    link->close();
  }

  StatePtr state_;
};

}  // namespace chaos
