// The bridge between gRPC's callback API and Boost.Asio.
//
// gRPC runs its callbacks and reactions on its own threads. Nothing here runs user code there:
// a reaction only moves data under a mutex and `post`s the waiting completion handler to the
// handler's associated executor. Asio per-operation cancellation maps to
// ClientContext::TryCancel() for unary calls, and to abandoning the wait (not the stream) for a
// stream read, so a read raced against a timer can be retried on the same stream.
//
// Every call registers its ClientContext with a CallTracker; the owner of the tracker (the
// Client) cancels what is still in flight and waits for gRPC to let go of it before the
// executor's io_context can be destroyed.
// This file: the calls' registry and unary calls; transport/grpc_stream.hpp: streams.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/system/error_code.hpp>

#include <grpcpp/client_context.h>
#include <grpcpp/support/client_callback.h>
#include <grpcpp/support/status.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>

namespace election::detail {

namespace asio = boost::asio;

/// Knows every call in flight, so that a shutdown can cancel them all and wait until gRPC has
/// finished with each. Thread-safe.
///
/// A call leaves in two steps: detach() when its context may no longer be cancelled (it is about
/// to be destroyed), release() once gRPC and the call are done with everything that refers to
/// the channel. close() returns only after every release(), so the Client always drops the last
/// reference to its channel itself, never a gRPC thread after it.
class CallTracker {
 public:
  /// Registers a context. Returns false (and cancels it) once close() has begun. A lingering
  /// call (a lease revocation) is given close()'s grace to finish before it is cancelled.
  bool add(grpc::ClientContext* ctx, bool linger = false) {
    std::lock_guard lock(mutex_);
    live_.insert(ctx);
    if (linger) lingering_.insert(ctx);
    ++calls_;
    if (closed_) ctx->TryCancel();
    return !closed_;
  }

  void detach(grpc::ClientContext* ctx) {
    std::lock_guard lock(mutex_);
    live_.erase(ctx);
    if (lingering_.erase(ctx) && lingering_.empty()) drained_.notify_all();
  }

  void release() {
    std::lock_guard lock(mutex_);
    if (--calls_ == 0) drained_.notify_all();
  }

  bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

  /// Refuses new calls, waits up to `grace` for the lingering ones to finish on their own, then
  /// cancels every call in flight and blocks until gRPC has completed them all. gRPC never waits
  /// for an executor, so this cannot deadlock when called from one.
  void close(std::chrono::milliseconds grace = std::chrono::milliseconds(0)) {
    std::unique_lock lock(mutex_);
    closed_ = true;
    drained_.wait_for(lock, grace, [this] { return lingering_.empty(); });
    for (auto* ctx : live_) ctx->TryCancel();
    drained_.wait(lock, [this] { return calls_ == 0; });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable drained_;
  std::unordered_set<grpc::ClientContext*> live_;
  std::unordered_set<grpc::ClientContext*> lingering_;
  std::size_t calls_ = 0;
  bool closed_ = false;
};

/// A handler's associated executor, with outstanding work counted until the handler has run:
/// a coroutine waiting on gRPC keeps its io_context's run() from returning.
template <class Handler>
auto tracked_executor(const Handler& handler, const asio::any_io_executor& fallback) {
  return asio::prefer(asio::get_associated_executor(handler, fallback),
                      asio::execution::outstanding_work.tracked);
}

/// Starts one unary call and completes with `void(grpc::Status, Response)` on the handler's
/// executor. `start(ctx, request, response, callback)` must begin the call through the stub's
/// callback API. Per-operation cancellation (any type) calls TryCancel(); the call then completes
/// with CANCELLED, exactly once.
template <class Response, class Request, class Start, class CompletionToken>
auto async_unary(std::shared_ptr<CallTracker> tracker, asio::any_io_executor fallback,
                 std::unique_ptr<grpc::ClientContext> context, Request request, Start start,
                 CompletionToken&& token, bool linger = false) {
  return asio::async_initiate<CompletionToken, void(grpc::Status, Response)>(
      [](auto handler, std::shared_ptr<CallTracker> tracker, asio::any_io_executor fallback,
         std::unique_ptr<grpc::ClientContext> context, Request request, Start start, bool linger) {
        using Handler = decltype(handler);
        struct Op {
          std::shared_ptr<grpc::ClientContext> context;
          Request request;
          Response response;
          Handler handler;
          decltype(tracked_executor(std::declval<Handler&>(), fallback)) executor;
          asio::cancellation_slot slot;
        };
        auto executor = tracked_executor(handler, fallback);
        auto slot = asio::get_associated_cancellation_slot(handler);
        auto op = std::make_shared<Op>(Op{std::shared_ptr<grpc::ClientContext>(std::move(context)),
                                          std::move(request), Response{}, std::move(handler),
                                          std::move(executor), slot});
        if (op->slot.is_connected()) {
          // The slot may outlive the call by a moment; hold the context, not the op.
          op->slot.assign([ctx = op->context](asio::cancellation_type) { ctx->TryCancel(); });
        }
        tracker->add(op->context.get(), linger);
        auto* ctx = op->context.get();
        start(ctx, &op->request, &op->response,
              [op, tracker = std::move(tracker)](grpc::Status status) mutable {
                tracker->detach(op->context.get());
                auto executor = op->executor;
                // The op (and its context) moves to the executor, so gRPC's thread keeps no
                // reference to the channel after release().
                asio::post(executor, [op = std::move(op), status = std::move(status)]() mutable {
                  if (op->slot.is_connected()) op->slot.clear();
                  std::move(op->handler)(std::move(status), std::move(op->response));
                });
                // Only after the post: the tracker's owner may destroy the io_context once
                // every call is released.
                tracker->release();
              });
      },
      token, std::move(tracker), std::move(fallback), std::move(context), std::move(request),
      std::move(start), linger);
}

}  // namespace election::detail
