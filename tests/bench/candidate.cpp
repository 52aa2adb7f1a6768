// bench-candidate: one participant in its own process, for the benchmarks that need a leader
// they can SIGKILL or a process start they can time.
//
//   bench-candidate --endpoints 127.0.0.1:2379 --election NAME --value V --ttl 2
//
// Prints, one line each, flushed at once (stdout is a pipe, where C stdio would buffer):
//   started <monotonic-us>                          on entering main()
//   leader <monotonic-us> <lease-hex> <key> <rev>   the moment campaign() returns
//   lost <monotonic-us> <reason>                    if leadership ends by itself
// SIGINT or SIGTERM: resigns (or withdraws from the line) and exits 0. Exits 3 after
// --max-seconds whatever happens, so a lost benchmark never leaves it running.
#include "election/election.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include <time.h>

namespace asio = boost::asio;

namespace {

long long now_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

struct Args {
  std::vector<std::string> endpoints;
  std::string election;
  std::string value = "bench-candidate";
  int ttl = 10;
  int max_seconds = 300;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "bench-candidate: %s\nusage: bench-candidate --endpoints H:P[,H:P] --election NAME "
               "[--value V] [--ttl SECONDS] [--max-seconds N]\n",
               why);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
    const std::string value = argv[++i];
    if (flag == "--endpoints") {
      std::istringstream in(value);
      for (std::string e; std::getline(in, e, ',');)
        if (!e.empty()) a.endpoints.push_back(e);
    } else if (flag == "--election") {
      a.election = value;
    } else if (flag == "--value") {
      a.value = value;
    } else if (flag == "--ttl") {
      a.ttl = std::atoi(value.c_str());
    } else if (flag == "--max-seconds") {
      a.max_seconds = std::atoi(value.c_str());
    } else {
      usage(("unknown flag " + flag).c_str());
    }
  }
  if (a.endpoints.empty() || a.election.empty()) usage("--endpoints and --election are required");
  return a;
}

asio::awaitable<int> run(election::Client& client, const Args& args) {
  auto executor = co_await asio::this_coro::executor;
  asio::signal_set signals(executor, SIGINT, SIGTERM);
  asio::steady_timer limit(executor, std::chrono::seconds(args.max_seconds));
  election::ParticipantOptions options;
  options.ttl = std::chrono::seconds(args.ttl);
  // As etcdctl, which has none: the 200 ms default on etcd 3.4.23 is a safety margin (see
  // ParticipantOptions::takeover_delay), not part of what the benchmark compares.
  options.takeover_delay = std::chrono::milliseconds(0);
  election::Participant me(client, args.election, args.value, options);

  auto campaigned = co_await election::first_of(
      me.campaign(), election::first_of(signals.async_wait(asio::use_awaitable),
                                        limit.async_wait(asio::use_awaitable)));
  if (campaigned.index() == 1) co_return std::get<1>(campaigned).index() == 0 ? 0 : 3;
  const auto& key = std::get<0>(campaigned);
  std::printf("leader %lld %s %s %lld\n", now_us(), election::lease_hex(key.lease).c_str(),
              key.key.c_str(), static_cast<long long>(key.create_revision));
  std::fflush(stdout);

  auto ended = co_await election::first_of(
      me.keep_alive(), election::first_of(signals.async_wait(asio::use_awaitable),
                                          limit.async_wait(asio::use_awaitable)));
  if (ended.index() == 0) {
    std::printf("lost %lld %s\n", now_us(), std::get<0>(ended).message().c_str());
    std::fflush(stdout);
    co_return 1;
  }
  co_await me.resign();
  co_return std::get<1>(ended).index() == 0 ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  const long long started = now_us();
  const Args args = parse(argc, argv);
  std::printf("started %lld\n", started);
  std::fflush(stdout);

  int code = 1;
  asio::io_context io;
  {
    election::ClientOptions options;
    options.endpoints = args.endpoints;
    election::Client client(io.get_executor(), options);
    asio::co_spawn(io, run(client, args), [&code](std::exception_ptr e, int result) {
      if (!e) {
        code = result;
        return;
      }
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        std::fprintf(stderr, "bench-candidate: %s\n", x.what());
      }
      code = 1;
    });
    io.run();
  }
  return code;
}
