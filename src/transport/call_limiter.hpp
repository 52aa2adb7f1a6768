// At most so many unary requests of one Client in flight at once. Private to the library.
#pragma once

#include "base/async_event.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <utility>

namespace election::detail {

/// Admits at most `limit` requests at once; the rest wait their turn, first come first served.
/// Without it, ten thousand campaigns started together send ten thousand lease grants at once:
/// etcd answers them slower than their attempt deadline, every attempt is sent again, and the
/// retries only add to the pile (measured: 2,274 of 10,000 campaigns failed with "deadline
/// exceeded"). A request's deadline starts when it is admitted, so waiting in line here does
/// not count against it.
///
/// Not thread-safe: use on the Client's executor. The limiter must outlive its slots.
class CallLimiter {
 public:
  /// One admitted request; its destruction admits the next.
  class Slot {
   public:
    Slot() = default;
    explicit Slot(CallLimiter* owner) : owner_(owner) {}
    Slot(Slot&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
    Slot& operator=(Slot&& other) noexcept {
      if (this != &other) {
        reset();
        owner_ = std::exchange(other.owner_, nullptr);
      }
      return *this;
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { reset(); }
    void reset() {
      if (auto* owner = std::exchange(owner_, nullptr)) owner->release();
    }

   private:
    CallLimiter* owner_ = nullptr;
  };

  CallLimiter(boost::asio::any_io_executor executor, std::size_t limit)
      : executor_(std::move(executor)), limit_(limit == 0 ? 1 : limit) {}

  /// Waits for a turn. Cancellable: a cancelled wait gives its turn on and throws
  /// operation_aborted.
  boost::asio::awaitable<Slot> acquire() { return acquire_with({}); }

  /// acquire(), cancelled through `cancel` rather than the awaiting coroutine's own
  /// cancellation state.
  boost::asio::awaitable<Slot> acquire(boost::asio::cancellation_slot cancel) {
    return acquire_with(std::optional(cancel));
  }

  std::size_t in_flight() const { return in_flight_; }
  /// Waiting for a turn now (not counting the ones that stopped waiting).
  std::size_t waiting() const { return waiting_.size() - abandoned_; }

 private:
  struct Turn {
    explicit Turn(boost::asio::any_io_executor executor) : granted(std::move(executor)) {}
    AsyncEvent granted;
    bool abandoned = false;
  };

  boost::asio::awaitable<Slot> acquire_with(std::optional<boost::asio::cancellation_slot> cancel) {
    if (in_flight_ < limit_ && waiting_.empty()) {
      ++in_flight_;
      co_return Slot(this);
    }
    auto turn = std::make_shared<Turn>(executor_);
    waiting_.push_back(turn);
    try {
      if (cancel)
        co_await turn->granted.wait(*cancel);
      else
        co_await turn->granted.wait();
    } catch (...) {
      turn->abandoned = true;
      if (!turn->granted.is_set()) ++abandoned_;  // still in line: release() skips it
      // Granted as the cancellation landed: the turn was ours, so it is given on.
      if (turn->granted.is_set()) release();
      throw;
    }
    co_return Slot(this);  // the slot was handed over by release(): in_flight_ counts it
  }

  void release() {
    // Hand the slot straight to the first live waiter, or give it back.
    while (!waiting_.empty()) {
      auto next = std::move(waiting_.front());
      waiting_.pop_front();
      if (next->abandoned) {
        --abandoned_;
        continue;
      }
      next->granted.set();
      return;
    }
    --in_flight_;
  }

  boost::asio::any_io_executor executor_;
  std::size_t limit_;
  std::size_t in_flight_ = 0;
  std::deque<std::shared_ptr<Turn>> waiting_;
  std::size_t abandoned_ = 0;  // of waiting_
};

}  // namespace election::detail
