// leader-worker: one node of a pool in which only the leader works.
//
// It runs an election::Leadership: the library's leader loop campaigns, runs this node's work
// while it leads, cancels the work when the leadership ends (and waits until it has stopped
// before the node says "lost"), and campaigns again, for as long as the process runs. The work:
// once a second it writes a counter through a fenced write, which etcd applies only while this
// node's leader key still exists. The loop's hooks print every leader change observed. With
// --metrics it serves /metrics and /healthz. On SIGINT or SIGTERM it stops the loop: the work
// stops, the leadership is resigned and the lease revoked (the next candidate takes over in
// milliseconds), and it exits 0.
//
// This file is the story: the flags, then the node's life, then its exit code. The parts, in
// leader_worker/: config (the flags, into a Config), worker (the Leadership's life, from start
// to resignation), work (the leader's fenced counter), reports (the library's hooks and client
// events, as events), events (the output lines: readable, or --json through
// common/json_line.hpp, shared with lock-exec), and with --metrics, metrics and
// http_endpoint.hpp.
// One io_context, one thread: every coroutine here runs on it, so none of them needs a lock.
#include "leader_worker/config.hpp"
#include "leader_worker/events.hpp"
#include "leader_worker/worker.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <exception>

int main(int argc, char** argv) {
  namespace asio = boost::asio;
  using namespace leader_worker;
  // Before any thread exists (gRPC's inherit the mask, so they never take these signals).
  set_stop_signals_blocked(true);
  Config config;
  if (const auto code = parse_command_line(argc, argv, config)) return *code;

  Events events(config.node, config.json);
  Worker worker(config, events);
  asio::io_context context(1);
  int code = 1;
  asio::co_spawn(context, worker.run(), [&](std::exception_ptr failure, int result) {
    code = result;
    if (!failure) return;
    code = 1;
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      events.fatal(e.what());
    }
  });
  context.run();
  return code;
}
