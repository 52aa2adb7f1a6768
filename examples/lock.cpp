// The README's lock example, as it is there: a job that must run on one machine at a time. It
// tries the lock, and if another holds it (this program, `etcdctl lock`, etcd's Go client),
// waits in line; runs the job while it holds the lock, every write fenced, so that etcd itself
// refuses a write once the lock is lost; and unlocks, which hands the lock on at once. ctest
// runs it against the fixture's etcd, alone and queued behind `etcdctl lock` (tests/examples).
#include <boost/asio.hpp>
#include <election/election.hpp>

#include <iostream>

namespace asio = boost::asio;

asio::awaitable<void> nightly_report(election::Mutex& mutex) {
  asio::steady_timer pause(co_await asio::this_coro::executor);
  for (int step = 1; step <= 3; ++step) {
    // Fenced by the lock key's create revision: refused (errc::not_leader) once it is lost.
    auto revision = co_await mutex.put_if_held("jobs/nightly-report-state", std::to_string(step));
    std::cout << "step " << step << " written at revision " << revision << std::endl;
    pause.expires_after(std::chrono::milliseconds(200));
    co_await pause.async_wait(asio::use_awaitable);
  }
}

asio::awaitable<void> run(election::Client& client) {
  election::Mutex mutex(client, "jobs/nightly-report", {.ttl = std::chrono::seconds(10)});
  // Error codes instead of exceptions: "held by another" is an answer here, not a failure.
  auto [ec, key] = co_await mutex.async_try_lock(asio::as_tuple(asio::use_awaitable));
  if (ec == election::errc::lock_held) {
    std::cout << "held by another: waiting in line" << std::endl;
    key = co_await mutex.lock();
  } else if (ec) {
    throw boost::system::system_error(ec);
  }
  std::cout << "locked " << key.key << ", fence " << key.create_revision << std::endl;
  // The job races the lost signal (lease gone, key deleted, deadline passed): the first to
  // finish cancels the other.
  auto ended = co_await election::first_of(nightly_report(mutex), mutex.wait_lost());
  if (ended.index() == 1) std::cout << "lost the lock: " << std::get<1>(ended).message() << "\n";
  co_await mutex.unlock();
  std::cout << "unlocked" << std::endl;
}

int main(int argc, char** argv) {
  asio::io_context io;
  election::Client client(io.get_executor(),
                          {.endpoints = {argc > 1 ? argv[1] : "127.0.0.1:2379"}});
  int code = 0;
  asio::co_spawn(io, run(client), [&](std::exception_ptr failure) {
    try {
      if (failure) std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      std::cerr << "lock: " << e.what() << std::endl;
      code = 1;
    }
  });
  io.run();
  return code;
}
