// A lease's shared state, and the keep-alive that serves every lease of one Client.
// Private to the library: it names gRPC and generated protobuf types.
#pragma once

#include "base/async_event.hpp"
#include "base/hold_count.hpp"
#include "base/lease_clock.hpp"
#include "base/notifier.hpp"
#include "base/time_source.hpp"
#include "lease/renewal_plan.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace election::detail {

/// Told what happens to a lease, on the lease's executor, after the keep-alive (or whoever lost
/// it) has moved on: a leadership listens instead of keeping a coroutine waiting, so that ten
/// thousand of them on one Session's lease cost a table entry each.
class LeaseListener {
 public:
  /// The lease is gone (etcd's TTL 0, its deadline for a lease not held past it, a revocation,
  /// the client closing). Called once.
  virtual void on_lease_lost(boost::system::error_code reason) = 0;
  /// The local deadline of a lease held past it passed (see LeaseState::deadline_passed()).
  virtual void on_lease_deadline() = 0;

 protected:
  ~LeaseListener() = default;
};

/// What the Lease handle, its owner and the Client's keep-alive share about one lease.
class LeaseState {
 public:
  LeaseState(std::shared_ptr<ClientCore> core, std::int64_t id, std::chrono::seconds requested,
             LeaseClock clock)
      : core(std::move(core)),
        id(id),
        requested(requested),
        clock(clock),
        answered_send(clock.last_acknowledged_send().time_since_epoch().count()),
        lost_event(this->core->executor()),
        renewed(this->core->executor()) {}

  void lose(boost::system::error_code reason) {
    if (lost_event.is_set()) return;
    lost_reason = reason;
    lost_event.set();
    auto told = std::exchange(listeners_, {});
    if (told.empty()) return;
    boost::asio::post(core->executor(), [told = std::move(told), reason] {
      for (const auto& [raw, weak] : told)
        if (auto l = weak.lock()) l->on_lease_lost(reason);
    });
  }

  /// The local deadline of a lease held past it passed: the leaderships on it end, the
  /// candidates in line stay (a lease not held past it is lost then instead).
  void deadline_passed() {
    if (listeners_.empty()) return;
    std::vector<std::weak_ptr<LeaseListener>> told;
    told.reserve(listeners_.size());
    for (const auto& [raw, weak] : listeners_) told.push_back(weak);
    boost::asio::post(core->executor(), [told = std::move(told)] {
      for (const auto& weak : told)
        if (auto l = weak.lock()) l->on_lease_deadline();
    });
  }

  /// Tells `l` of the lease's loss and deadlines until unlisten(); a lease already lost tells
  /// it at once (posted).
  void listen(LeaseListener* l, std::weak_ptr<LeaseListener> weak) {
    if (lost()) {
      boost::asio::post(core->executor(), [weak = std::move(weak), reason = lost_reason] {
        if (auto l = weak.lock()) l->on_lease_lost(reason);
      });
      return;
    }
    listeners_[l] = std::move(weak);
  }
  void unlisten(LeaseListener* l) { listeners_.erase(l); }

  bool lost() const { return lost_event.is_set(); }

  /// Whether the local deadline has passed: the server may expire the lease any moment.
  bool past_deadline() const { return clock.expired(core->time().now()); }

  std::shared_ptr<ClientCore> core;
  const std::int64_t id;
  const std::chrono::seconds requested;
  LeaseClock clock;
  /// clock.last_acknowledged_send(), for readers on other threads (health probes, metrics).
  std::atomic<lease_clock::rep> answered_send;
  AsyncEvent lost_event;
  boost::system::error_code lost_reason;
  Notifier renewed;  // notified after every renewal etcd answered
  /// A Session's lease, shared by many participants: always held past its local deadline, so
  /// only etcd's word (TTL 0), a revocation or the client closing ends it.
  bool shared = false;
  /// Set while its participant waits in line: the local deadline passing does not give the
  /// lease up, because nothing is done on its strength until the win. Renewals go on, and only
  /// etcd's word (TTL 0) or the client closing ends it: after an etcd outage longer than the
  /// deadline allows, etcd still has the lease (a new raft leader extends every lease), and the
  /// candidate keeps its key and its place in line.
  bool hold_past_deadline = false;
  /// The Lease handle of a lease granted through Lease::grant was destroyed: its operations
  /// fail with errc::object_gone.
  bool abandoned = false;

 private:
  std::unordered_map<LeaseListener*, std::weak_ptr<LeaseListener>> listeners_;
};

/// Grants a lease of `ttl` (after Client::connect) and starts keeping it alive. Throws as
/// Lease::grant: errc::invalid_ttl, errc::ttl_refused, errc::invalid_argument (margin),
/// errc::unreachable, errc::timeout, errc::client_closed, auth errors.
boost::asio::awaitable<std::shared_ptr<LeaseState>> grant_lease(std::shared_ptr<ClientCore> core,
                                                                std::chrono::seconds ttl,
                                                                std::chrono::milliseconds margin);

/// The leadership a withdrawal ends, when it signs its resignation: the election and the
/// leader key's create revision (see signed_resignation in kv.hpp).
struct Signature {
  std::string election;
  std::string key;
  std::int64_t create_revision;
};

/// Takes a lease out of use: its renewals stop at once, and its revocation (which deletes its
/// keys: the candidate leaves the line at once instead of a TTL later) is sent and retried in
/// the background, each try with a fresh deadline, until etcd confirms it or the lease must
/// have expired anyway (its deadline + a TTL + 2 s, as etcd extends every lease by its TTL and
/// an election timeout when its raft leader changes). The first try starts before start()
/// returns, so a Client destroyed right after still lets it land (ClientCore::close).
///
/// Given a Signature (a leader ending its own leadership), the leader key is first deleted by
/// a signed resignation, so that the next candidate knows its owner let it go and leads without
/// the takeover delay; the revocation then takes the signature with the lease. A signature
/// etcd refuses (no permission on the signature's key) or whose guard fails (the key already
/// went) changes nothing: the revocation goes on as without one.
///
/// For a Session's lease, shared by other participants, start_key() takes one candidate key
/// off it instead: the key is deleted (signed when given a Signature), and so is its
/// signature, whatever the signed Txn answered (an attempt applied whose answer was lost
/// leaves one behind that a later attempt's failed guard does not report). The deletion waits
/// for `after` first (a campaign's entry still unanswered, which could create the key again),
/// and is retried until etcd confirms it or the lease is gone: the lease lives on, so a key left
/// behind would stand in line for as long as the Session does.
class Withdrawal {
 public:
  static std::shared_ptr<Withdrawal> start(std::shared_ptr<LeaseState> lease,
                                           std::optional<Signature> sign = std::nullopt);
  static std::shared_ptr<Withdrawal> start_key(std::shared_ptr<LeaseState> lease, std::string key,
                                               std::optional<Signature> sign = std::nullopt,
                                               std::shared_ptr<AsyncEvent> after = nullptr);

  explicit Withdrawal(boost::asio::any_io_executor executor) : done(std::move(executor)) {}

  bool finished() const { return done.is_set(); }
  /// Once finished: empty when etcd confirmed the revocation or the deletion (or had the lease
  /// no more).
  const boost::system::error_code& result() const { return result_; }
  const std::string& message() const { return message_; }

  AsyncEvent done;

 private:
  // Tries each step until it succeeds, fails for good, or the lease must have expired.
  static boost::asio::awaitable<void> retry(std::shared_ptr<Withdrawal> self,
                                            std::shared_ptr<LeaseState> lease, std::string key,
                                            std::optional<Signature> sign,
                                            std::vector<std::shared_ptr<void>> streams,
                                            std::shared_ptr<AsyncEvent> after);
  void finish(boost::system::error_code result, std::string message);

  boost::system::error_code result_;
  std::string message_;
};

/// Renews every live lease of one Client on a LeaseKeepAlive stream, as etcd's own Go client
/// does: a participant then costs no gRPC call of its own while it waits, and the renewals of
/// many leases go out together instead of each waking the process on its own. RenewalPlan
/// decides what to send where (pipelined renewals, late answers counted from their send time,
/// a stuck stream hedged by a new one); this class opens, writes, reads and closes the streams,
/// and wakes at the plan's times on a timer that counts suspended time.
///
/// Runs on the Client's executor; not thread-safe. Its loop runs while it has leases and holds
/// the ClientCore while it does.
class KeepAliveHub : public std::enable_shared_from_this<KeepAliveHub> {
 public:
  explicit KeepAliveHub(const std::shared_ptr<ClientCore>& core);

  /// The hub of `core`, made on first use.
  static std::shared_ptr<KeepAliveHub> of(const std::shared_ptr<ClientCore>& core);

  /// Starts keeping `lease` alive; its first renewal is due a period after its grant was sent.
  /// `grant_rtt` (the grant's round trip) seeds the patience before the first answer.
  void add(const std::shared_ptr<LeaseState>& lease, std::chrono::nanoseconds grant_rtt);

  /// Stops keeping lease `id` alive at once. An answer still on its way is ignored.
  void remove(std::int64_t id);

  /// Keeps the open stream open while the returned pointer lives, even with no lease left to
  /// renew (see Withdrawal::start).
  std::shared_ptr<void> hold_stream();

  const RenewalPlan::Counters& counters() const { return plan_.counters(); }

 private:
  using KeepAliveStream =
      BidiStream<etcdserverpb::LeaseKeepAliveRequest, etcdserverpb::LeaseKeepAliveResponse>;

  static boost::asio::awaitable<void> drive(std::shared_ptr<KeepAliveHub> self,
                                            std::shared_ptr<ClientCore> core);
  static boost::asio::awaitable<void> read(std::shared_ptr<KeepAliveHub> self,
                                           std::shared_ptr<ClientCore> core,
                                           RenewalPlan::StreamId stream);
  static boost::asio::awaitable<void> reauthenticate(std::shared_ptr<KeepAliveHub> self,
                                                     std::shared_ptr<ClientCore> core,
                                                     std::uint64_t seen);

  void apply(const RenewalPlan::Action& action, const std::shared_ptr<ClientCore>& core);
  void lose(std::int64_t id, boost::system::error_code reason);
  void count(ClientCore& core) const;  // the plan's counters into the Client's metrics
  void lose_all(boost::system::error_code reason);
  void poke() { wake_.cancel(); }

  BootTimer wake_;
  RenewalPlan plan_;
  HoldCount holds_;
  std::map<std::int64_t, std::shared_ptr<LeaseState>> leases_;
  std::map<RenewalPlan::StreamId, KeepAliveStream> streams_;
  std::map<RenewalPlan::StreamId, std::string> peers_;  // of streams that have answered
  bool running_ = false;
  bool reauthenticating_ = false;
  bool reauthenticated_ = false;  // since the last answer: a second refusal is final
  std::uint64_t opened_with_token_ = 0;
};

}  // namespace election::detail
