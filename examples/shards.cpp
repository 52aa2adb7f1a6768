// One process, many elections, one lease: a Leadership per shard on one election::Session, so
// the process renews one lease however many shards it campaigns for. SIGINT or SIGTERM stops
// every shard (each deletes its own key); then the Session's lease is revoked, and run() returns.
#include <boost/asio.hpp>
#include <election/election.hpp>

#include <iostream>
#include <list>

namespace asio = boost::asio;

int main(int argc, char** argv) {
  asio::io_context io;
  election::Client client(io.get_executor(),
                          {.endpoints = {argc > 1 ? argv[1] : "127.0.0.1:2379"}});
  election::Session session(client, {.ttl = std::chrono::seconds(5)});
  auto work = [](election::Participant& me,
                 const election::LeaderKey& key) -> asio::awaitable<void> {
    std::cout << "leading " << me.election() << " with lease " << key.lease << std::endl;
    asio::steady_timer idle(co_await asio::this_coro::executor,
                            asio::steady_timer::duration::max());
    co_await idle.async_wait(asio::use_awaitable);  // until the leadership ends
  };
  std::list<election::Leadership> shards;
  for (int shard = 0; shard < 8; ++shard)
    shards.emplace_back(session, "jobs/shard-" + std::to_string(shard), "node-1", work);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) {
    for (auto& shard : shards) shard.stop();
  });
  int running = static_cast<int>(shards.size());
  for (auto& shard : shards)
    shard.async_run([&](boost::system::error_code) {
      if (--running == 0) {  // every shard has stopped
        signals.cancel();
        session.close();
      }
    });
  io.run();
}
