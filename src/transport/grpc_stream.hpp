// Streams over gRPC's callback API, read from Asio (see transport/grpc_call.hpp for the rules
// every call keeps): a bidirectional stream whose reads run continuously into a queue that one
// coroutine at a time reads, and whose writes are queued and sent one at a time.
#pragma once

#include "transport/grpc_call.hpp"

#include <grpcpp/support/client_callback.h>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace election::detail {

namespace asio = boost::asio;

/// Messages received on a stream, waiting to be read on an executor. Pushed from gRPC reactions,
/// read from one coroutine at a time. A read waits for the next message or for the end of the
/// stream; cancelling a read abandons only the wait, and a message that arrives later stays
/// queued for the next read.
template <class Message>
class ReadQueue : public std::enable_shared_from_this<ReadQueue<Message>> {
 public:
  using Signature = void(boost::system::error_code, std::optional<Message>);

  /// Called from a reaction: queue a message, or hand it to the waiting reader.
  void push(Message message) {
    std::unique_lock lock(mutex_);
    if (waiter_) {
      auto waiter = std::move(waiter_);
      waiter_.reset();
      lock.unlock();
      waiter->complete({}, std::move(message));
      return;
    }
    messages_.push_back(std::move(message));
  }

  /// Called once from OnDone: the stream is over; readers get std::nullopt after the queue drains.
  void finish(grpc::Status status) {
    std::unique_lock lock(mutex_);
    status_ = std::move(status);
    finished_ = true;
    if (waiter_) {
      auto waiter = std::move(waiter_);
      waiter_.reset();
      lock.unlock();
      waiter->complete({}, std::nullopt);
    }
  }

  /// The final status; meaningful once a read has returned std::nullopt.
  grpc::Status status() const {
    std::lock_guard lock(mutex_);
    return status_;
  }

  /// Completes with the next message, std::nullopt once the stream has ended, or
  /// operation_aborted when cancelled (or when another read is already waiting).
  template <class CompletionToken>
  auto async_read(asio::any_io_executor fallback, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, Signature>(
        [](auto handler, std::shared_ptr<ReadQueue> self, asio::any_io_executor fallback) {
          self->start_read(std::move(handler), std::move(fallback));
        },
        token, this->shared_from_this(), std::move(fallback));
  }

 private:
  struct Waiter {
    asio::any_completion_handler<Signature> handler;
    asio::any_io_executor executor;  // tracked: keeps the io_context's run() going
    asio::cancellation_slot slot;

    void complete(boost::system::error_code ec, std::optional<Message> message) {
      auto executor = this->executor;
      asio::post(executor, [w = std::move(*this), ec, m = std::move(message)]() mutable {
        if (w.slot.is_connected()) w.slot.clear();
        std::move(w.handler)(ec, std::move(m));
      });
    }
  };

  template <class Handler>
  void start_read(Handler handler, asio::any_io_executor fallback) {
    asio::any_io_executor executor = tracked_executor(handler, fallback);
    auto slot = asio::get_associated_cancellation_slot(handler);
    Waiter waiter{asio::any_completion_handler<Signature>(std::move(handler)), std::move(executor),
                  slot};
    std::unique_lock lock(mutex_);
    if (!messages_.empty()) {
      auto message = std::move(messages_.front());
      messages_.pop_front();
      lock.unlock();
      waiter.complete({}, std::move(message));
      return;
    }
    if (finished_ || waiter_) {
      const bool busy = waiter_.has_value() && !finished_;
      lock.unlock();
      waiter.complete(busy ? asio::error::in_progress : boost::system::error_code{}, std::nullopt);
      return;
    }
    if (slot.is_connected()) {
      slot.assign([weak = this->weak_from_this()](asio::cancellation_type) {
        if (auto self = weak.lock()) self->cancel_read();
      });
    }
    waiter_.emplace(std::move(waiter));
  }

  void cancel_read() {
    std::unique_lock lock(mutex_);
    if (!waiter_) return;
    auto waiter = std::move(waiter_);
    waiter_.reset();
    lock.unlock();
    // Completing through post keeps the handler from running inside the cancellation emit.
    waiter->complete(asio::error::operation_aborted, std::nullopt);
  }

  mutable std::mutex mutex_;
  std::deque<Message> messages_;
  std::optional<Waiter> waiter_;
  bool finished_ = false;
  grpc::Status status_;
};

/// A stream's context and its place in the CallTracker.
class StreamCall {
 public:
  StreamCall(std::shared_ptr<CallTracker> tracker, std::unique_ptr<grpc::ClientContext> context)
      : tracker_(std::move(tracker)), context_(std::move(context)) {}

  grpc::ClientContext* context() { return context_.get(); }
  void start() { tracker_->add(context_.get()); }

  /// Safe from any thread, also after finish().
  void try_cancel() {
    std::lock_guard lock(mutex_);
    if (context_) context_->TryCancel();
  }

  /// The server's address as gRPC names it ("ipv4:127.0.0.1:2379"), once the call has started;
  /// empty after finish(). Safe from any thread.
  std::string peer() {
    std::lock_guard lock(mutex_);
    return context_ ? context_->peer() : std::string();
  }

  /// From OnDone: drops the context (and with it a reference to the channel) before the
  /// tracker hears that the call is over.
  void finish() {
    tracker_->detach(context_.get());
    std::unique_ptr<grpc::ClientContext> context;
    {
      std::lock_guard lock(mutex_);
      context = std::move(context_);
    }
    context.reset();
    tracker_->release();
  }

 private:
  std::shared_ptr<CallTracker> tracker_;
  std::mutex mutex_;
  std::unique_ptr<grpc::ClientContext> context_;
};

/// A bidirectional stream. Reads run continuously into a ReadQueue; writes are queued and sent
/// one at a time. A hold keeps the call open for writes made from outside reactions until the
/// read side has ended.
template <class Request, class Response>
class BidiReactor final : public grpc::ClientBidiReactor<Request, Response> {
 public:
  BidiReactor(std::shared_ptr<CallTracker> tracker, std::unique_ptr<grpc::ClientContext> context)
      : call_(std::move(tracker), std::move(context)) {}

  grpc::ClientContext* context() { return call_.context(); }
  const std::shared_ptr<ReadQueue<Response>>& queue() const { return queue_; }
  void try_cancel() { call_.try_cancel(); }
  std::string peer() { return call_.peer(); }

  template <class Bind>
  void start(std::shared_ptr<BidiReactor> self, Bind bind) {
    self_ = std::move(self);
    call_.start();
    bind(this);
    this->AddHold();
    this->StartRead(&buffer_);
    this->StartCall();
  }

  /// Queues a message. Returns false when the stream has already ended.
  bool write(Request request) {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    if (read_done_) return false;
    writes_.push_back(std::move(request));
    if (writes_.size() == 1) this->StartWrite(&writes_.front());
    return true;
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    writes_.pop_front();
    if (!ok) {
      writes_.clear();  // the stream is broken; OnReadDone(false) and OnDone follow
      return;
    }
    if (writes_.empty() || read_done_) return;
    // More queued behind this one (a batch of renewals): let gRPC hold it back, so the batch
    // leaves in one flush; the last of the queue goes without the hint and flushes them all.
    if (writes_.size() > 1)
      this->StartWrite(&writes_.front(), grpc::WriteOptions().set_buffer_hint());
    else
      this->StartWrite(&writes_.front());
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      queue_->push(std::move(buffer_));
      buffer_ = Response{};
      this->StartRead(&buffer_);
      return;
    }
    {
      std::lock_guard<std::recursive_mutex> lock(mutex_);
      read_done_ = true;
    }
    this->RemoveHold();
  }

  void OnDone(const grpc::Status& status) override {
    queue_->finish(status);
    auto self = std::move(self_);  // may be the last owner: nothing touches *this after here
    call_.finish();
  }

 private:
  StreamCall call_;
  std::shared_ptr<ReadQueue<Response>> queue_ = std::make_shared<ReadQueue<Response>>();
  Response buffer_;
  // Recursive: gRPC may run a reaction inline from a Start* call made under this lock.
  std::recursive_mutex mutex_;
  std::deque<Request> writes_;  // front() is in flight; deque keeps its address stable
  bool read_done_ = false;
  std::shared_ptr<BidiReactor> self_;
};

/// What user-side code holds for a stream: reads through the queue, cancels the call when it
/// goes away. Move-only. `Reactor` is BidiReactor<Request, Response>
/// (tests/support/server_stream.hpp has a server-streaming one).
template <class Reactor, class Response>
class Stream {
 public:
  Stream() = default;
  Stream(std::shared_ptr<Reactor> reactor, asio::any_io_executor executor)
      : reactor_(std::move(reactor)), executor_(std::move(executor)) {}
  Stream(Stream&&) noexcept = default;
  Stream& operator=(Stream&& other) noexcept {
    if (this != &other) {
      cancel();
      reactor_ = std::move(other.reactor_);
      executor_ = std::move(other.executor_);
    }
    return *this;
  }
  ~Stream() { cancel(); }

  explicit operator bool() const { return reactor_ != nullptr; }

  /// See ReadQueue::async_read. Does not touch *this after initiation, so the Stream may be
  /// destroyed while a read is pending: the read then completes with std::nullopt.
  template <class CompletionToken>
  auto async_read(CompletionToken&& token) {
    return reactor_->queue()->async_read(executor_, std::forward<CompletionToken>(token));
  }

  /// The final status, once a read has returned std::nullopt.
  grpc::Status status() const { return reactor_->queue()->status(); }

  /// The member it runs on, once started (see StreamCall::peer); empty without a stream.
  std::string peer() const { return reactor_ ? reactor_->peer() : std::string(); }

  /// Only for bidirectional streams.
  template <class Request>
  bool write(Request request) {
    return reactor_->write(std::move(request));
  }

  void cancel() {
    if (reactor_) {
      reactor_->try_cancel();
      reactor_.reset();
    }
  }

 private:
  std::shared_ptr<Reactor> reactor_;
  asio::any_io_executor executor_;
};

template <class Request, class Response>
using BidiStream = Stream<BidiReactor<Request, Response>, Response>;

/// Starts a bidirectional stream. `bind(context, reactor)` calls the stub's async method.
template <class Request, class Response, class Bind>
BidiStream<Request, Response> start_bidi_stream(std::shared_ptr<CallTracker> tracker,
                                                asio::any_io_executor executor,
                                                std::unique_ptr<grpc::ClientContext> context,
                                                Bind bind) {
  auto reactor =
      std::make_shared<BidiReactor<Request, Response>>(std::move(tracker), std::move(context));
  reactor->start(reactor, [&](BidiReactor<Request, Response>* r) { bind(r->context(), r); });
  return BidiStream<Request, Response>(std::move(reactor), std::move(executor));
}

}  // namespace election::detail
