// The README's first example, as it is there: a service that leads an election with
// election::Leadership, which campaigns, runs the work while this process leads, stops it when
// the leadership ends, and campaigns again, for as long as it runs. SIGINT or SIGTERM stops it:
// the work stops and the leadership is resigned, so the next candidate leads at once. ctest runs
// it against the fixture's etcd (tests/examples).
#include <election/election.hpp>
#include <boost/asio.hpp>

#include <iostream>

namespace asio = boost::asio;

// Runs while this process leads; cancelled the moment the leadership ends.
asio::awaitable<void> work(election::Participant& me, const election::LeaderKey& key) {
  std::cout << "leading with " << key.key << std::endl;
  asio::steady_timer tick(co_await asio::this_coro::executor);
  for (std::int64_t seq = 0;; ++seq) {
    // Refused by etcd (errc::not_leader) once this node no longer holds its leader key.
    auto revision = co_await me.put_if_leader("jobs/scheduler-state", std::to_string(seq));
    std::cout << "wrote " << seq << " at revision " << revision << std::endl;
    tick.expires_after(std::chrono::seconds(1));
    co_await tick.async_wait(asio::use_awaitable);
  }
}

int main(int argc, char** argv) {
  asio::io_context io;
  election::Client client(io.get_executor(),
                          {.endpoints = {argc > 1 ? argv[1] : "127.0.0.1:2379"}});
  election::Leadership leader(client, "jobs/scheduler", "node-1", work,
                              {.participant = {.ttl = std::chrono::seconds(5)}});
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { leader.stop(); });
  leader.async_run([&](boost::system::error_code ec) {  // ends only when stopped
    if (ec) std::cerr << "leadership: " << ec.message() << std::endl;
    signals.cancel();
  });
  io.run();
}
