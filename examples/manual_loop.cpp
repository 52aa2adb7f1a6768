// The README's loop underneath Leadership, as it is there: the same service as quickstart.cpp
// written on Participant: campaign, race the work against keep_alive(), campaign again. SIGINT
// or SIGTERM stops it: the campaign withdraws (or the work stops and the participant's lease is
// revoked), so the next candidate leads at once. ctest runs it against the fixture's etcd
// (tests/examples).
#include <boost/asio.hpp>
#include <election/election.hpp>

#include <iostream>

namespace asio = boost::asio;

asio::awaitable<void> do_work(election::Participant& me) {
  asio::steady_timer tick(co_await asio::this_coro::executor);
  for (std::int64_t seq = 0;; ++seq) {
    // Refused by etcd (errc::not_leader) once this node no longer holds its leader key.
    auto revision = co_await me.put_if_leader("jobs/scheduler-state", std::to_string(seq));
    std::cout << "wrote " << seq << " at revision " << revision << std::endl;
    tick.expires_after(std::chrono::seconds(1));
    co_await tick.async_wait(asio::use_awaitable);
  }
}

asio::awaitable<void> serve(election::Client& client) {
  election::Participant me(client, "jobs/scheduler", "node-1", {.ttl = std::chrono::seconds(5)});
  for (;;) {
    election::LeaderKey key = co_await me.campaign();  // waits in line; the lease kept alive
    std::cout << "leading with " << key.key << std::endl;
    // Lead until leadership ends; the work is cancelled when it does.
    auto ended = co_await election::first_of(do_work(me), me.keep_alive());
    std::cout << "leadership ended: " << std::get<1>(ended).message() << std::endl;
  }
}

int main(int argc, char** argv) {
  asio::io_context io;
  election::Client client(io.get_executor(),
                          {.endpoints = {argc > 1 ? argv[1] : "127.0.0.1:2379"}});
  asio::signal_set stop(io, SIGINT, SIGTERM);
  // The first to finish cancels the other: a signal ends serve(), which withdraws.
  asio::co_spawn(io, election::first_of(serve(client), stop.async_wait(asio::use_awaitable)),
                 asio::detached);
  io.run();
}
