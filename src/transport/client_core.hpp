// The Client's shared core: channel, stubs, call tracking and the status -> error mapping.
// Private to the library: it names gRPC and generated protobuf types.
#pragma once

#include "base/backoff.hpp"
#include "base/rtt.hpp"
#include "base/throw.hpp"
#include "base/time_source.hpp"
#include "election/error.hpp"
#include "election/metrics.hpp"
#include "election/options.hpp"
#include "transport/call_limiter.hpp"
#include "transport/grpc_call.hpp"
#include "transport/grpc_stream.hpp"

#include "etcd/rpc.grpc.pb.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <grpcpp/channel.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

namespace election::detail {

/// The endpoint list as a gRPC target, or an error naming the bad endpoint.
struct Target {
  std::string uri;        // e.g. "ipv4:127.0.0.1:2379,127.0.0.1:22379" or "dns:///etcd:2379"
  std::string authority;  // host:port of the first endpoint
  bool https = false;     // endpoints given as https://
  bool http = false;      // endpoints given as http://
};
Target make_target(const std::vector<std::string>& endpoints);

/// A gRPC status as an error_code: errc where the status means something specific to etcd or
/// elections, otherwise grpc_category() with the status code. CANCELLED is operation_aborted.
boost::system::error_code to_error_code(const grpc::Status& status, bool channel_ready);

class KeepAliveHub;
class WatchHub;
class EntryBatcher;
class ElectionFeed;
struct AuthAttempt;
struct VersionQuery;

/// What a Client's background work has done: written on its executor, read from any thread
/// (Client::metrics()). See election::ClientMetrics for each field.
struct ClientStats {
  std::atomic<std::uint64_t> renewals_sent{0};
  std::atomic<std::uint64_t> renewals_answered{0};
  std::atomic<std::uint64_t> renewals_late{0};
  std::array<std::atomic<std::uint64_t>, Histogram::bounds.size()> renewal_buckets{};
  std::atomic<std::uint64_t> renewal_count{0};
  std::atomic<std::int64_t> renewal_sum_ns{0};
  std::atomic<std::uint64_t> keep_alive_streams{0};
  std::atomic<std::uint64_t> keep_alive_hedges{0};
  std::atomic<std::uint64_t> watch_streams{0};
  std::atomic<std::uint64_t> watch_stalls{0};
  std::atomic<std::uint64_t> leases{0};
  std::atomic<std::uint64_t> watches{0};
  std::atomic<std::uint64_t> internal_errors{0};

  void observe_renewal(std::chrono::nanoseconds rtt) {
    const double seconds = std::chrono::duration<double>(rtt).count();
    for (std::size_t i = 0; i < Histogram::bounds.size(); ++i)
      if (seconds <= Histogram::bounds[i])
        renewal_buckets[i].fetch_add(1, std::memory_order_relaxed);
    renewal_count.fetch_add(1, std::memory_order_relaxed);
    renewal_sum_ns.fetch_add(rtt.count(), std::memory_order_relaxed);
  }

  ClientMetrics snapshot() const {
    ClientMetrics m;
    m.renewals_sent = renewals_sent.load();
    m.renewals_answered = renewals_answered.load();
    m.renewals_late = renewals_late.load();
    for (std::size_t i = 0; i < Histogram::bounds.size(); ++i)
      m.renewal_seconds.buckets[i] = renewal_buckets[i].load();
    m.renewal_seconds.count = renewal_count.load();
    m.renewal_seconds.sum =
        std::chrono::duration<double>(std::chrono::nanoseconds(renewal_sum_ns.load())).count();
    m.keep_alive_streams = keep_alive_streams.load();
    m.keep_alive_hedges = keep_alive_hedges.load();
    m.watch_streams = watch_streams.load();
    m.watch_stalls = watch_stalls.load();
    m.leases = leases.load();
    m.watches = watches.load();
    m.internal_errors = internal_errors.load();
    return m;
  }
};

class ClientCore {
  // First, so destroyed last: the keep-alive's BootTimer (in keep_alive_hub) unregisters from it.
  TimeSource time_;

 public:
  ClientCore(boost::asio::any_io_executor executor, ClientOptions options);
  ~ClientCore();

  const boost::asio::any_io_executor& executor() const { return executor_; }
  const ClientOptions& options() const { return options_; }
  const std::shared_ptr<CallTracker>& tracker() const { return tracker_; }
  bool channel_ready() const;
  std::string endpoint_list() const;  // as given, comma-separated, for messages

  /// Cancels all calls in flight and waits for gRPC to release them; later calls fail with
  /// errc::client_closed. Lease revocations already sent (a participant withdrawing) are first
  /// given a moment to land, so `{ Client c; Participant p(c, ...); }` still hands over at once.
  void close();

  /// The time lease deadlines are judged by (counts suspended time), and the round trip to etcd
  /// as the streams measure it.
  TimeSource& time() { return time_; }
  const TimeSource& time() const { return time_; }
  RttEstimator& rtt() { return rtt_; }
  const RttEstimator& rtt() const { return rtt_; }
  ClientStats& stats() { return stats_; }

  /// Tells ClientOptions::on_event, if set; what it throws is dropped.
  void report(ClientEvent::Kind kind, std::string peer, std::string what = {}) const {
    if (!options_.on_event) return;
    try {
      options_.on_event(ClientEvent{kind, std::move(peer), std::move(what)});
    } catch (...) {
    }
  }

  /// The completion handler of a background coroutine (`what` names it): an exception it ends
  /// with is counted and reported (ClientEvent::internal_error), never dropped. Its own
  /// cancellation (operation_aborted) is how such work is stopped, not a failure.
  static auto background(const std::shared_ptr<ClientCore>& core, const char* what) {
    return [weak = std::weak_ptr<ClientCore>(core), what](std::exception_ptr e) {
      if (!e) return;
      auto self = weak.lock();
      if (!self) return;
      self->internal_error(what, e);
    };
  }
  void internal_error(const char* what, const std::exception_ptr& e);

  /// How long one attempt of a retried request may take: a third of the request timeout until
  /// the round trip is known, then twice the round-trip timeout (at least 500 ms), so a frozen
  /// member costs half a second, not seconds, and a slow link still gets its answers.
  std::chrono::milliseconds attempt_timeout() const;

  /// Election names in use on this Client (Participants and Observers), counted. Throws
  /// errc::invalid_argument when `name` nests with another one in use ("a" and "a/b"): the
  /// election "a" would count the candidates of "a/b" as its own.
  void claim_election(const std::string& name);
  void release_election(const std::string& name);

  /// Throws errc::invalid_argument when `key` lies under the prefix of an election in use on
  /// this Client: a key there without a lease would stand in its line for ever.
  void check_outside_elections(const std::string& key, const std::string& what) const;

  /// The etcd version of the member asked (Maintenance Status), asked once per Client; empty
  /// when etcd could not say. Callers that find a query in flight wait for it.
  boost::asio::awaitable<std::string> server_version();

  boost::asio::awaitable<void> connect();

  std::unique_ptr<grpc::ClientContext> unary_context() const;
  std::unique_ptr<grpc::ClientContext> stream_context() const;

  /// Throws system_error for a failed status: "`what`: server message".
  [[noreturn]] void throw_status(const grpc::Status& status, const std::string& what) const;

  /// Whether requests must carry a token: a user is configured.
  bool has_credentials() const { return !options_.user.empty(); }

  /// Counts the tokens obtained so far (0: not authenticated yet). A caller notes it before a
  /// request, so that after a rejection it authenticates again only if nobody else has since.
  std::uint64_t token_generation() const { return token_generation_; }

  /// Authenticates again, unless a token newer than generation `seen` exists already. Calls
  /// that find an authentication in flight wait for it, so a thousand participants rejected at
  /// once cost etcd one password check (bcrypt), not a thousand. Throws errc::auth_failed when
  /// etcd refuses the credentials. An etcd without authentication enabled leaves no token.
  boost::asio::awaitable<void> refresh_token(std::uint64_t seen);

  /// Whether etcd refused a request for its token (expired, invalidated by a password change,
  /// issued before the auth store last changed, or missing), which a new token may cure.
  static bool token_rejected(const grpc::Status& status);

  /// A stub's callback-API method for a unary call, e.g. &etcdserverpb::KV::Stub::async::Range.
  template <class AsyncStub, class Request, class Response>
  using UnaryMethod = void (AsyncStub::*)(grpc::ClientContext*, const Request*, Response*,
                                          std::function<void(grpc::Status)>);

  /// One unary call with the given context; the status is the caller's to judge.
  ///
  /// Call sites pass member pointers, not lambdas: g++ 12 destroys a lambda temporary that
  /// appears in a co_await expression twice (a capture of a shared_ptr then corrupts its count).
  template <class AsyncStub, class Request, class Response>
  boost::asio::awaitable<std::tuple<grpc::Status, Response>> call_status(
      std::unique_ptr<grpc::ClientContext> context, AsyncStub* stub,
      UnaryMethod<AsyncStub, Request, Response> method, Request request, bool linger = false) {
    if (tracker_->closed())
      co_return std::tuple{grpc::Status(grpc::StatusCode::CANCELLED, "client closed"), Response{}};
    auto start = [stub, method](grpc::ClientContext* ctx, const Request* req, Response* resp,
                                std::function<void(grpc::Status)> done) {
      (stub->*method)(ctx, req, resp, std::move(done));
    };
    co_return co_await async_unary<Response>(tracker_, executor_, std::move(context),
                                             std::move(request), start, boost::asio::use_awaitable,
                                             linger);
  }

  /// One unary call with the request deadline. Returns the response or throws system_error
  /// ("`what`: server message").
  template <class AsyncStub, class Request, class Response>
  boost::asio::awaitable<Response> call(std::string what, AsyncStub* stub,
                                        UnaryMethod<AsyncStub, Request, Response> method,
                                        Request request) {
    if (tracker_->closed()) throw_error(errc::client_closed, what);
    auto turn = co_await limiter_.acquire();
    if (has_credentials() && token_generation_ == 0) co_await refresh_token(0);
    const auto seen = token_generation_;
    // The request is kept for one retry with a new token; only then is it worth a copy.
    Request first = has_credentials() ? request : std::move(request);
    auto result = co_await call_status(unary_context(), stub, method, std::move(first));
    if (has_credentials() && token_rejected(std::get<0>(result))) {
      co_await refresh_token(seen);
      result = co_await call_status(unary_context(), stub, method, std::move(request));
    }
    auto& [status, response] = result;
    if (!status.ok()) throw_status(status, what);
    co_return std::move(response);
  }

  /// call() for requests that may safely be sent again: reads, guarded writes, lease revokes,
  /// and lease grants (a duplicate grant only expires unused). Attempts last a third of the
  /// request timeout (0.5 to 2 s) and are repeated within the request timeout when a retry may
  /// cure the failure: a member that hangs (deadline exceeded), etcd's "no leader", "leader
  /// changed" and "request timed out" (UNAVAILABLE), which is how a write proposed while the
  /// raft leader changed is lost, and etcd's "too many requests". Without this one lost
  /// proposal costs the whole timeout.
  ///
  /// `linger`: the Client's close gives this request a moment to land (lease revocations).
  template <class AsyncStub, class Request, class Response>
  boost::asio::awaitable<Response> call_retrying(std::string what, AsyncStub* stub,
                                                 UnaryMethod<AsyncStub, Request, Response> method,
                                                 Request request, bool linger = false) {
    using namespace std::chrono;
    if (tracker_->closed()) throw_error(errc::client_closed, what);
    // A lingering request (a revocation, a withdrawn key) goes out at once, so that it is in
    // flight before a closing Client stops sending; the rest wait their turn.
    CallLimiter::Slot turn;
    if (!linger) turn = co_await limiter_.acquire();
    if (tracker_->closed()) throw_error(errc::client_closed, what);
    if (has_credentials() && token_generation_ == 0) co_await refresh_token(0);
    const auto end = steady_clock::now() + options_.request_timeout;
    const auto attempt = attempt_timeout();
    Backoff backoff(milliseconds(50), milliseconds(500));
    boost::asio::steady_timer pause(executor_);
    bool token_renewed = false;
    for (;;) {
      const auto seen = token_generation_;
      const auto left = duration_cast<milliseconds>(end - steady_clock::now());
      auto context = unary_context();
      context->set_deadline(system_clock::now() + std::clamp(left, milliseconds(1), attempt));
      auto [status, response] =
          co_await call_status(std::move(context), stub, method, request, linger);
      if (status.ok()) co_return std::move(response);
      if (has_credentials() && !token_renewed && token_rejected(status)) {
        token_renewed = true;
        co_await refresh_token(seen);
        continue;
      }
      const auto code = status.error_code();
      // etcd shedding load ("too many requests": 3.4 sends it as UNKNOWN, later releases as
      // RESOURCE_EXHAUSTED; to_error_code maps both there) applied nothing: try again after a
      // pause, as for UNAVAILABLE.
      const bool shed =
          to_error_code(status, true) ==
          boost::system::error_code(static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED),
                                    grpc_category());
      const bool again = code == grpc::StatusCode::DEADLINE_EXCEEDED ||
                         code == grpc::StatusCode::UNAVAILABLE || shed;
      if (!again || steady_clock::now() + milliseconds(50) >= end) throw_status(status, what);
      if (code == grpc::StatusCode::UNAVAILABLE || shed) {
        pause.expires_after(backoff.next());
        co_await pause.async_wait(boost::asio::use_awaitable);
      }
    }
  }

  etcdserverpb::KV::Stub& kv() { return *kv_; }
  etcdserverpb::Lease::Stub& lease() { return *lease_; }
  etcdserverpb::Watch::Stub& watch() { return *watch_; }
  /// The channel, for stubs of services the library does not use itself (tests).
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  /// The keep-alive for all leases of this Client (see lease_state.hpp).
  std::shared_ptr<KeepAliveHub> keep_alive_hub;

  /// Candidates entering their lines, many to one Txn (see entry_batcher.hpp).
  std::shared_ptr<EntryBatcher> entry_batcher;

  /// Campaigns of this Client past their start and not yet in line, at most: the rest wait
  /// before anything of their way into line is built. Ten thousand campaigns started at once
  /// on a Session otherwise hold every frame of the way into line (about 8 KiB each) together,
  /// and the allocator keeps that peak resident (10.9 KiB per election that leads, without a
  /// bound). A campaign gives its turn on once its key is in line (or it ended), so a long
  /// wait in line holds none. The bound trades memory for start-up: `election-bench
  /// shards-one --n 10000 --lease session`, three runs each, resident per election and all
  /// leading: 512: 7.4-8.2 KiB, 0.58-0.69 s; 384: 7.2-7.4 KiB, 0.69-0.81 s; 256: 5.9-6.3
  /// KiB, 0.92-1.16 s (with a lease each: 2.4 s).
  static constexpr std::size_t campaigns_entering = 384;
  CallLimiter& entry_gate() { return entry_gate_; }

  /// The one Watch stream for every watch of this Client (see watch_hub.hpp).
  std::shared_ptr<WatchHub> watch_hub;

  /// One feed per election for every Observer, campaign and term of this Client, by name
  /// (see election_feed.hpp).
  std::map<std::string, std::weak_ptr<ElectionFeed>> election_feeds;

 private:
  boost::asio::any_io_executor executor_;
  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<CallTracker> tracker_ = std::make_shared<CallTracker>();
  CallLimiter limiter_{executor_, options_.max_requests_in_flight};
  CallLimiter entry_gate_{executor_, campaigns_entering};
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance_;
  RttEstimator rtt_;
  ClientStats stats_;
  std::map<std::string, int> elections_;  // claimed names, counted
  std::optional<std::string> server_version_;
  std::shared_ptr<VersionQuery> version_query_;
  boost::asio::awaitable<void> wait_connected();
  boost::asio::awaitable<void> authenticate();

  bool use_tls_ = false;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth_;
  std::string token_;  // empty: none (no credentials, or etcd has authentication disabled)
  std::uint64_t token_generation_ = 0;
  std::shared_ptr<AuthAttempt> auth_attempt_;  // the authentication in flight, if any
};

}  // namespace election::detail
