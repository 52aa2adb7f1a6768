// election::Mutex: etcd's lock (the one behind etcdctl lock and etcd's Go concurrency.Mutex),
// fenced, on the same campaign engine as an election.
#pragma once

#include "election/client.hpp"
#include "election/clock.hpp"
#include "election/detail/initiate.hpp"
#include "election/error.hpp"
#include "election/leadership.hpp"
#include "election/options.hpp"
#include "election/participant.hpp"
#include "election/session.hpp"
#include "election/values.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace election {

/// The key that holds a lock: `name/hex(lease)`, as etcd's Mutex and its Lock RPC make it.
/// `create_revision` is the fencing token: every later holder's is larger.
using LockKey = LeaderKey;

/// A lock's options: its lease TTL (how long after this process dies, hangs or is cut off
/// another can take the lock), the lease's margin, and the takeover delay after a holder's key
/// went without its say (see ParticipantOptions). On a Session, the Session's lease serves.
using MutexOptions = ParticipantOptions;

namespace detail {
class ParticipantState;
struct LockFollower;
}  // namespace detail

/// A distributed lock on etcd. A lock is an election whose candidates carry no value: the keys
/// are etcd's (`name/hex(lease)`, empty value, on the lease), held in create-revision order,
/// so a Mutex waits in one queue with `etcdctl lock`, etcd's Go client's Mutex and the Lock
/// RPC, both ways. Everything an election of this library gets right, a lock gets too: the
/// lease is kept alive from its grant (a waiter keeps its place), the hold ends at the first of
/// a keep-alive saying the lease is gone, the key deleted, or the lease's local deadline
/// passing; the own key is known to be present when lock() returns (etcd 3.4's Go Mutex does
/// not check); a holder's key removed without its say is waited out for the takeover delay; an
/// unlock of a hold that still stands is signed, so the next holder takes over at once. A hold
/// lost otherwise (its lease's local deadline, a lost watch) keeps its key, renewed no more,
/// until unlock() says the work under it has stopped, or etcd could have expired it: unlock
/// once that work has stopped, and the next holder is let in only then.
///
/// A lock without fencing is advisory: a holder paused past its lease (a GC pause, SIGSTOP, a
/// VM freeze) still believes it holds the lock while another does (Jepsen's etcd 3.4.3
/// analysis). put_if_held() is fenced by the key's create revision: etcd itself refuses the
/// late write. Use it, or pass fencing_revision() to the resource you protect.
///
/// Every operation comes as an awaitable (throws election::error) and an `async_*` form with
/// any completion token (default: deferred) and optionally a `diagnostics&` that must live
/// until the handler has run; cancellation as Participant's: lock() and try_lock() as
/// campaign(), unlock() as resign(), put_if_held() as put_if_leader(), wait_lost() as
/// keep_alive(). Calls that overlap behave as a Participant's. Destroying a Mutex unlocks (or
/// withdraws from the queue) in the background. Thread safety: as Participant.
///
/// The takeover delay (200 ms on etcd before 3.4.31 and 3.5.13) is counted from when the
/// lock's last release was seen: a Mutex follows its queue from construction (one watch on
/// the Client's shared stream), so a lock() within the delay of the Mutex's construction waits
/// the rest of it, and later ones wait only after a release nobody signed (etcdctl's, an
/// operator's delete, an expiry).
class Mutex {
 public:
  /// A lock named `name` on its own lease (granted by lock()). The name is refused as an
  /// election name is (empty, ending in '/', nesting with another election or lock in use on
  /// this Client): errc::invalid_election_name, errc::invalid_argument; a TTL <= 0:
  /// errc::invalid_ttl.
  Mutex(Client& client, std::string name, MutexOptions options = {});
  /// A lock on a Session's lease. One lock or election of one name per Session: a second is
  /// refused with errc::invalid_argument (on one lease, etcd's Lock RPC would hand both the
  /// same key, and both would believe they hold it).
  Mutex(Session& session, std::string name, MutexOptions options = {});

  Mutex(Mutex&&) noexcept;
  Mutex& operator=(Mutex&&) noexcept;
  ~Mutex();

  const std::string& name() const { return participant_.election(); }

  /// Waits in line until this Mutex holds the lock.
  /// Completes: holding it, with its key. Token form: void(error_code, LockKey).
  /// Errors: as Participant::campaign (errc::invalid_argument while held or locking,
  ///   errc::lease_expired, auth errors, errc::client_closed, errc::object_gone).
  /// Cancellation: terminal, partial; a cancelled lock() leaves the queue.
  boost::asio::awaitable<LockKey> lock() { return participant_.campaign(); }
  template <class CompletionToken = default_token>
  auto async_lock(CompletionToken&& token = {}) {
    return participant_.async_campaign(std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = default_token>
  auto async_lock(diagnostics& diag, CompletionToken&& token = {}) {
    return participant_.async_campaign(diag, std::forward<CompletionToken>(token));
  }

  /// Takes the lock if nobody holds it or waits for it, without waiting in line.
  /// Completes: holding it (after the takeover delay, if the last holder's key just went
  ///   without its say), or with errc::lock_held once another key is seen first: its key is
  ///   gone from the queue then, etcd having confirmed its withdrawal, unless etcd did not
  ///   within the request timeout (the withdrawal then goes on in the background until it does
  ///   or the lease expires). Token form: void(error_code, LockKey). Errors and cancellation: as
  ///   lock().
  boost::asio::awaitable<LockKey> try_lock();
  template <class CompletionToken = default_token>
  auto async_try_lock(CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, LockKey)>(
        std::forward<CompletionToken>(token), nullptr,
        detail::bind_start(&start_try_lock, state()));
  }
  template <class CompletionToken = default_token>
  auto async_try_lock(diagnostics& diag, CompletionToken&& token = {}) {
    return detail::initiate<void(boost::system::error_code, LockKey)>(
        std::forward<CompletionToken>(token), &diag, detail::bind_start(&start_try_lock, state()));
  }

  /// Releases the lock, or leaves the queue: the key is deleted and the lease revoked, with
  /// fresh deadlines until etcd confirms; is_held() is false before anything is sent. A hold that
  /// still stands is released by a signed resignation (the next holder takes over without the
  /// takeover delay): call unlock() once the work under the lock has stopped. After wait_lost()
  /// said the hold ended, this removes the key kept since (unsigned).
  /// Token form: void(error_code). Errors and cancellation: as Participant::resign.
  boost::asio::awaitable<void> unlock() { return participant_.resign(); }
  template <class CompletionToken = default_token>
  auto async_unlock(CompletionToken&& token = {}) {
    return participant_.async_resign(std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = default_token>
  auto async_unlock(diagnostics& diag, CompletionToken&& token = {}) {
    return participant_.async_resign(diag, std::forward<CompletionToken>(token));
  }

  /// The "lock lost" signal: waits until the hold ends and says why (errc::lease_expired,
  /// errc::lease_revoked, errc::key_deleted, errc::lease_deadline_passed, errc::resigned after
  /// unlock()). Errors: errc::not_leader when the lock was never taken.
  /// Token form: void(error_code, error_code reason). Cancellation: any type; nothing left.
  boost::asio::awaitable<boost::system::error_code> wait_lost() {
    return participant_.keep_alive();
  }
  template <class CompletionToken = default_token>
  auto async_wait_lost(CompletionToken&& token = {}) {
    return participant_.async_keep_alive(std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = default_token>
  auto async_wait_lost(diagnostics& diag, CompletionToken&& token = {}) {
    return participant_.async_keep_alive(diag, std::forward<CompletionToken>(token));
  }

  /// Writes `value` at `key` only while this Mutex's key exists with its create revision: one
  /// Txn, so etcd refuses a deposed holder's late write. Returns the write's revision.
  /// Errors: errc::not_leader (not held, or etcd refused: the key is gone),
  ///   errc::invalid_argument (a key inside an election's or lock's prefix), as put_if_leader.
  boost::asio::awaitable<std::int64_t> put_if_held(std::string key, std::string value) {
    return participant_.put_if_leader(std::move(key), std::move(value));
  }
  template <class CompletionToken = default_token>
  auto async_put_if_held(std::string key, std::string value, CompletionToken&& token = {}) {
    return participant_.async_put_if_leader(std::move(key), std::move(value),
                                            std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = default_token>
  auto async_put_if_held(std::string key, std::string value, diagnostics& diag,
                         CompletionToken&& token = {}) {
    return participant_.async_put_if_leader(std::move(key), std::move(value), diag,
                                            std::forward<CompletionToken>(token));
  }

  /// Whether this Mutex holds the lock now (false from the moment the hold ended).
  bool is_held() const { return participant_.is_leader(); }
  /// The key of the current (or last) hold: `name/hex(lease)`.
  std::optional<LockKey> key() const { return participant_.leader_key(); }
  /// The current (or last) hold's fencing token: its key's create revision. (etcdctl lock's
  /// ETCD_LOCK_REV is the revision etcd answered the lock at, which is at or after it.)
  std::optional<std::int64_t> fencing_revision() const;
  /// The hold's local deadline (see Participant::deadline).
  std::optional<lease_clock::time_point> deadline() const { return participant_.deadline(); }
  /// The participant underneath (its takeover_wait(), granted_ttl(), candidates(), observe()).
  const Participant& participant() const { return participant_; }

 private:
  using State = std::shared_ptr<detail::ParticipantState>;
  template <class... Values>
  using Handler = boost::asio::any_completion_handler<void(boost::system::error_code, Values...)>;
  static void start_try_lock(State s, Handler<LockKey> handler, diagnostics* diag);
  State state() const;

  Participant participant_;
  // Follows the lock's queue from construction (one watch on the Client's shared stream), so
  // that lock() knows how the lock last changed hands: after this Mutex's own signed unlock,
  // or a release seen longer than the takeover delay ago, it waits none of the delay.
  std::shared_ptr<detail::LockFollower> follower_;
};

/// "Run this work while holding the lock": a Leadership whose candidates carry no value takes
/// the lock `name`, runs `work` while it holds it, cancels and awaits the work when the hold
/// ends, and takes the lock again, for as long as it runs (see Leadership). The work's
/// Participant& writes through put_if_leader(), fenced as put_if_held().
Leadership lock_loop(Client& client, std::string name, Leadership::Work work,
                     LeadershipOptions options = {}, LeadershipHooks hooks = {});
Leadership lock_loop(Session& session, std::string name, Leadership::Work work,
                     LeadershipOptions options = {}, LeadershipHooks hooks = {});

}  // namespace election
