// A lease's shared state, and the keep-alive that serves every lease of one Client.
// Private to the library: it names gRPC and generated protobuf types.
#pragma once

#include "client_core.hpp"
#include "election/detail/async_event.hpp"
#include "election/detail/backoff.hpp"
#include "election/detail/lease_clock.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>

namespace election::detail {

/// What the Lease handle and the Client's keep-alive share about one lease.
class LeaseState {
 public:
  LeaseState(std::shared_ptr<ClientCore> core, std::int64_t id, std::chrono::seconds requested,
             LeaseClock clock)
      : core(std::move(core)),
        id(id),
        requested(requested),
        clock(clock),
        lost_event(this->core->executor()) {}

  void lose(boost::system::error_code reason) {
    if (lost_event.is_set()) return;
    lost_reason = reason;
    lost_event.set();
  }

  std::shared_ptr<ClientCore> core;
  const std::int64_t id;
  const std::chrono::seconds requested;
  LeaseClock clock;
  AsyncEvent lost_event;
  boost::system::error_code lost_reason;
  /// Set while its participant waits in line: the local deadline passing does not give the
  /// lease up, because nothing is done on its strength until the win. Renewals go on, and only
  /// etcd's word (TTL 0) or the client closing ends it: after an etcd outage longer than the
  /// deadline allows, etcd still has the lease (a new raft leader extends every lease), and the
  /// candidate keeps its key and its place in line.
  bool hold_past_deadline = false;
};

/// Renews every live lease of one Client on a single LeaseKeepAlive stream, as etcd's own Go
/// client does: a participant then costs no gRPC call of its own while it waits, and the
/// renewals of many leases go out together instead of each waking the process on its own.
///
/// Each lease is renewed every third of its TTL. Renewals due within a short window of each
/// other are sent in one batch (early, which is always safe), so leases granted at different
/// moments fall into step. A lease counts as lost the moment its local deadline passes, whatever
/// the stream is doing, unless it is held past it (LeaseState::hold_past_deadline). A renewal
/// unanswered for half a period (at least 500 ms) means the stream is stuck (a frozen member, or a
/// follower still forwarding to a frozen raft leader): the stream is dropped and the due renewals
/// go out on a new one, which round-robin places on another member; replies still on their way on
/// the old stream are not counted.
///
/// Runs on the Client's executor; not thread-safe. The hub's loop runs while it has leases and
/// holds the ClientCore while it does.
class KeepAliveHub : public std::enable_shared_from_this<KeepAliveHub> {
 public:
  using clock = LeaseClock::clock;

  explicit KeepAliveHub(const std::shared_ptr<ClientCore>& core);

  /// The hub of `core`, made on first use.
  static std::shared_ptr<KeepAliveHub> of(const std::shared_ptr<ClientCore>& core);

  /// Starts keeping `lease` alive; its first renewal is due a period after its grant was sent.
  void add(const std::shared_ptr<LeaseState>& lease);

  /// Stops keeping lease `id` alive. A reply still on its way is ignored.
  void remove(std::int64_t id);

 private:
  struct Entry {
    std::weak_ptr<LeaseState> lease;
    std::optional<clock::time_point> sent;  // a renewal awaiting its reply, sent then
  };
  using KeepAliveStream =
      BidiStream<etcdserverpb::LeaseKeepAliveRequest, etcdserverpb::LeaseKeepAliveResponse>;

  static boost::asio::awaitable<void> drive(std::shared_ptr<KeepAliveHub> self,
                                            std::shared_ptr<ClientCore> core);
  static boost::asio::awaitable<void> read(std::shared_ptr<KeepAliveHub> self,
                                           std::shared_ptr<ClientCore> core,
                                           std::uint64_t generation);

  /// One pass: expire, detect a stuck stream, send what is due. Returns when to look again.
  clock::time_point step(ClientCore& core, const std::shared_ptr<ClientCore>& owner);
  bool send(ClientCore& core, const std::shared_ptr<ClientCore>& owner, std::int64_t id);
  void drop_stream();
  void lose_all(boost::system::error_code reason);
  void poke() { wake_.cancel(); }

  static std::chrono::milliseconds patience(const LeaseClock& c);
  static std::chrono::milliseconds batch_window(const LeaseClock& c);

  boost::asio::steady_timer wake_;
  std::map<std::int64_t, Entry> entries_;
  KeepAliveStream stream_;
  std::uint64_t generation_ = 0;  // which stream a reader belongs to
  bool running_ = false;
  clock::time_point retry_at_{};  // no new stream before this, after one failed
  Backoff backoff_{std::chrono::milliseconds(50), std::chrono::seconds(1)};
};

}  // namespace election::detail
