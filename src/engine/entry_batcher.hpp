// Candidates entering their elections' lines, many to one transaction. Private to the library.
#pragma once

#include "base/async_event.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace election::detail {

/// Puts candidate keys in line for any number of elections of one Client in as few requests as
/// etcd allows. Entries made in the same turn of the executor go out together in one Txn: one
/// compare, one put and one read of the election's line per election, so that each entry
/// learns its line, as of its revision, from the same request (its election's feed starts from
/// that, without a read of its own). Ten thousand campaigns started at once on a Session then
/// cost etcd about a hundred and sixty transactions instead of twenty thousand requests.
///
/// At most one entry per election goes in one Txn: all puts of a Txn get the same create
/// revision, and two candidates of one election with equal create revisions would both stand
/// first for etcd's own clients (each waits only for keys with a lower one). Entries of one
/// election go in Txns of their own, in the order they came.
///
/// Every election keeps its own guard: when a compare fails, etcd applies the failure branch,
/// which reads each key; an entry whose key was absent (its compare held, nothing was applied)
/// is sent again, the others are answered with what the read found. A batch that etcd refuses
/// as too big (more operations than its --max-txn-ops, 128 by default; or over its request
/// size) is split in halves, and the size it took is remembered; a refusal that needs a person
/// (no permission on one election's keys) is split down to the one entry it is about, so that
/// it fails that one only. A refusal that is the whole batch's (the client closed, credentials
/// refused, the one lease all its entries are on gone) fails every entry at once. Transient
/// failures are retried inside each request as any request's (ClientCore::call_retrying); what
/// is left fails every entry of the batch.
///
/// An entry whose campaign stops waiting for it (cancelled, resigned, its participant gone)
/// is not sent if it has not been yet; one in flight is left to its Txn, which may create the
/// key or find it: whoever takes the key out again (the campaign's withdrawal) waits until the
/// Txn is answered (unanswered()), so that no attempt of it lands after the deletion.
///
/// Not thread-safe; on the Client's executor.
class EntryBatcher : public std::enable_shared_from_this<EntryBatcher> {
 public:
  /// One candidate's entry: its key, created with `value` and `lease` unless it exists.
  struct Entry {
    std::string key;
    std::string value;
    std::int64_t lease;
    std::string line_key;  ///< the election's prefix ("name/")
    std::string line_end;
  };

  struct Result {
    /// True when the key was created by this entry; false when it existed (`existing`).
    bool created;
    /// The transaction's revision: the key's create revision when it was created.
    std::int64_t revision;
    std::optional<mvccpb::KeyValue> existing;
    /// Every key of the election's line as of `revision` (this entry's key included).
    std::vector<mvccpb::KeyValue> line;
  };

  /// Operations per branch of one Txn: etcd's default --max-txn-ops. A smaller limit is
  /// learnt when etcd refuses one.
  static constexpr std::size_t max_ops = 128;
  /// Bytes of values per Txn: well under etcd's default --max-request-bytes (1.5 MiB).
  static constexpr std::size_t max_bytes = 1024 * 1024;
  /// Txns sent and not yet answered, at most; entries beyond wait here, as a few bytes each,
  /// not as built requests (a burst of 10,000 would otherwise hold all of them at once).
  /// etcd applies them one after another anyway: a few in flight keep it busy.
  static constexpr std::size_t max_in_flight = 8;

  explicit EntryBatcher(const std::shared_ptr<ClientCore>& core);

  /// The batcher of `core`, made on first use.
  static std::shared_ptr<EntryBatcher> of(const std::shared_ptr<ClientCore>& core);

  /// Puts `entry` in line, with the entries gathered beside it. Throws what the request
  /// failed with (as ClientCore::call_retrying).
  boost::asio::awaitable<Result> enter(Entry entry);

  /// Entries per Txn now (two operations each per branch).
  std::size_t entries_per_txn() const { return limit_; }

  /// An entry for `key` whose campaign stopped waiting while its Txn was in flight, as long as
  /// that Txn is unanswered: set once it is (every attempt answered, or given up). Null if there
  /// is none.
  std::shared_ptr<AsyncEvent> unanswered(const std::string& key);

 private:
  struct Pending {
    explicit Pending(Entry e, boost::asio::any_io_executor executor)
        : entry(std::move(e)), done(std::move(executor)) {}
    Entry entry;
    AsyncEvent done;
    std::optional<Result> result;
    std::exception_ptr failure;
    bool abandoned = false;  // its campaign stopped waiting for it
  };
  using Batch = std::vector<std::shared_ptr<Pending>>;

  void schedule();
  void flush();
  static boost::asio::awaitable<void> send(std::shared_ptr<EntryBatcher> self,
                                           std::shared_ptr<ClientCore> core, Batch batch);
  static bool too_big(const boost::system::error_code& ec, const std::string& message);
  static bool whole_batch(const boost::system::error_code& ec, const Batch& batch);
  static Batch drop_abandoned(Batch batch);

  std::weak_ptr<ClientCore> core_;
  std::deque<std::shared_ptr<Pending>> pending_;
  std::vector<std::weak_ptr<Pending>> abandoned_;  // in flight, their campaigns gone
  bool scheduled_ = false;
  std::size_t limit_ = max_ops / 2;
  std::size_t in_flight_ = 0;  // send()s running
};

}  // namespace election::detail
