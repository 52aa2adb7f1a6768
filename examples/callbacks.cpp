// A service without coroutines: one thread runs the io_context, the main thread drives the
// election with std::future, and a callback hears when the leadership ends. Every operation of
// the library has such a completion-token form beside its awaitable one.
//   callbacks [ENDPOINT]     default 127.0.0.1:2379
#include <boost/asio.hpp>
#include <election/election.hpp>

#include <future>
#include <iostream>
#include <optional>
#include <thread>

namespace asio = boost::asio;

int main(int argc, char** argv) {
  asio::io_context io;
  auto busy = asio::make_work_guard(io);
  // Made before the io_context's thread runs: objects of one Client belong to its executor.
  std::optional<election::Client> client;
  client.emplace(io.get_executor(),
                 election::ClientOptions{.endpoints = {argc > 1 ? argv[1] : "127.0.0.1:2379"}});
  std::optional<election::Participant> me;
  me.emplace(*client, "jobs/callbacks", "plain-thread", election::ParticipantOptions{});
  std::thread loop([&] { io.run(); });

  try {
    // The main thread waits; the work runs on the io_context's thread.
    const election::LeaderKey key = me->async_campaign(asio::use_future).get();
    std::cout << "leading with " << key.key << std::endl;

    // A callback, run on the io_context's thread, when this leadership ends.
    me->async_keep_alive([](boost::system::error_code ec, boost::system::error_code reason) {
      std::cout << "leadership ended: " << (ec ? ec : reason).message() << std::endl;
    });

    for (int seq = 0; seq < 3; ++seq) {
      const auto revision =
          me->async_put_if_leader("jobs/callbacks-state", std::to_string(seq), asio::use_future)
              .get();
      std::cout << "wrote " << seq << " at revision " << revision << std::endl;
    }

    // The error-code path, and what the library (or etcd) said: a key inside the election's
    // own prefix is refused before anything is sent.
    election::diagnostics why;
    std::promise<boost::system::error_code> refused;
    me->async_put_if_leader(
        "jobs/callbacks/oops", "x", why,
        [&](boost::system::error_code ec, std::int64_t) { refused.set_value(ec); });
    if (refused.get_future().get()) std::cout << "refused: " << why.message() << std::endl;

    me->async_resign(asio::use_future).get();
    std::cout << "resigned" << std::endl;
  } catch (const boost::system::system_error& e) {
    std::cerr << "callbacks: " << e.what() << std::endl;
  }

  // Destroyed on their executor's thread, then the thread ends.
  asio::post(io, asio::use_future([&] {
               me.reset();
               client.reset();
             }))
      .get();
  busy.reset();
  loop.join();
}
