// A server-streaming call over the library's gRPC bridge, for tests that drive etcd services the
// library does not call (the Election service's Observe): the library itself uses only unary
// calls and bidirectional streams (transport/grpc_stream.hpp).
#pragma once

#include "transport/grpc_stream.hpp"

#include <grpcpp/support/client_callback.h>

#include <memory>
#include <string>

namespace election::detail {

/// A server-streaming call (one request, a stream of responses). Reads run continuously into a
/// ReadQueue. The reactor owns itself from StartCall to OnDone; the ServerStream handle that
/// user code holds cancels the call when destroyed.
template <class Response>
class ReadReactor final : public grpc::ClientReadReactor<Response> {
 public:
  ReadReactor(std::shared_ptr<CallTracker> tracker, std::unique_ptr<grpc::ClientContext> context)
      : call_(std::move(tracker), std::move(context)) {}

  grpc::ClientContext* context() { return call_.context(); }
  const std::shared_ptr<ReadQueue<Response>>& queue() const { return queue_; }
  void try_cancel() { call_.try_cancel(); }
  std::string peer() { return call_.peer(); }

  /// `bind(reactor)` must call the stub's async method with this reactor. The reactor keeps
  /// itself alive until OnDone.
  template <class Bind>
  void start(std::shared_ptr<ReadReactor> self, Bind bind) {
    self_ = std::move(self);
    call_.start();
    bind(this);
    this->StartRead(&buffer_);
    this->StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the status.
    queue_->push(std::move(buffer_));
    buffer_ = Response{};
    this->StartRead(&buffer_);
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
  std::shared_ptr<ReadReactor> self_;
};

template <class Response>
using ServerStream = Stream<ReadReactor<Response>, Response>;

/// Starts a server stream. `bind(context, reactor)` calls the stub's async method.
template <class Response, class Bind>
ServerStream<Response> start_server_stream(std::shared_ptr<CallTracker> tracker,
                                           asio::any_io_executor executor,
                                           std::unique_ptr<grpc::ClientContext> context,
                                           Bind bind) {
  auto reactor = std::make_shared<ReadReactor<Response>>(std::move(tracker), std::move(context));
  reactor->start(reactor, [&](ReadReactor<Response>* r) { bind(r->context(), r); });
  return ServerStream<Response>(std::move(reactor), std::move(executor));
}

}  // namespace election::detail
