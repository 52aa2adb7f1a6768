#include "raw_watch.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace election::detail {

namespace asio = boost::asio;

KeyWatch::KeyWatch(std::shared_ptr<ClientCore> core, std::string key, std::string range_end,
                   std::int64_t start_revision)
    : core_(std::move(core)),
      key_(std::move(key)),
      range_end_(std::move(range_end)),
      next_revision_(start_revision) {}

void KeyWatch::open() {
  opened_with_token_ = core_->token_generation();
  stream_ = start_bidi_stream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>(
      core_->tracker(), core_->executor(), core_->stream_context(),
      [this](auto* ctx, auto* reactor) { core_->watch().async()->Watch(ctx, reactor); });
  etcdserverpb::WatchRequest request;
  auto* create = request.mutable_create_request();
  create->set_key(key_);
  create->set_range_end(range_end_);
  create->set_start_revision(next_revision_);
  stream_.write(std::move(request));
}

asio::awaitable<KeyWatch::Batch> KeyWatch::next() {
  asio::steady_timer timer(core_->executor());
  for (;;) {
    if (core_->tracker()->closed()) throw_error(errc::client_closed, "watch " + key_);
    if (!stream_) open();
    auto message = co_await stream_.async_read(asio::use_awaitable);
    if (!message) {
      const auto status = stream_.status();
      stream_ = {};
      const auto code = status.error_code();
      if (code == grpc::StatusCode::UNAUTHENTICATED ||
          code == grpc::StatusCode::PERMISSION_DENIED) {
        const bool retry = co_await reauthenticate();
        if (retry) continue;
        core_->throw_status(status, "watch " + key_);
      }
      timer.expires_after(backoff_.next());
      co_await timer.async_wait(asio::use_awaitable);
      continue;
    }
    if (message->compact_revision() > 0) {
      stream_ = {};
      throw_error(errc::compacted, "watch " + key_ + " from revision " +
                                       std::to_string(next_revision_) + " (compacted at " +
                                       std::to_string(message->compact_revision()) + ")");
    }
    if (message->canceled()) {
      // Cancelled by the server for another reason (e.g. the member lost its leader): resume.
      stream_ = {};
      // etcd names an expired token in the reason ("... Unauthenticated desc = etcdserver:
      // invalid auth token"), and a missing permission as "permission denied".
      const auto& reason = message->cancel_reason();
      const bool denied = reason.find("permission denied") != std::string::npos;
      if (denied || ClientCore::token_rejected(grpc::Status(grpc::StatusCode::UNKNOWN, reason))) {
        const bool retry = co_await reauthenticate();
        if (retry) continue;
        throw_error(denied ? errc::permission_denied : errc::auth_failed,
                    "watch " + key_ + ": " + reason);
      }
      timer.expires_after(backoff_.next());
      co_await timer.async_wait(asio::use_awaitable);
      continue;
    }
    if (message->created()) {
      backoff_.reset();
      reauthenticated_ = false;
    }
    if (message->events().empty()) continue;
    Batch batch;
    batch.events.assign(message->events().begin(), message->events().end());
    batch.revision = batch.events.back().kv().mod_revision();
    next_revision_ = batch.revision + 1;
    co_return batch;
  }
}

asio::awaitable<bool> KeyWatch::reauthenticate() {
  // A refusal after a fresh token is a real lack of permission.
  if (!core_->has_credentials() || reauthenticated_) co_return false;
  reauthenticated_ = true;
  co_await core_->refresh_token(opened_with_token_);
  co_return true;
}

}  // namespace election::detail
