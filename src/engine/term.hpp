// One leadership, from a won campaign until the first thing that ends it.
// Private to the library.
#pragma once

#include "base/async_event.hpp"
#include "election/options.hpp"
#include "election/values.hpp"
#include "engine/election_feed.hpp"
#include "lease/lease_state.hpp"

#include <boost/system/error_code.hpp>

#include <functional>
#include <memory>

namespace election::detail {

/// Ends at the first of: the lease lost (etcd said TTL 0, or its local deadline passed), the
/// leader key gone from the election's view (deleted, or missing from a re-read after a
/// compaction), the election's feed failing for a reason a retry cannot cure, or end() (resign,
/// the participant destroyed). A term that ends after its lease's local deadline, whatever
/// noticed it first, ends with errc::lease_deadline_passed: that is when it stopped being safe.
class Term : public FeedListener, public LeaseListener, public std::enable_shared_from_this<Term> {
 public:
  using OnEnd = std::function<void(Term&)>;

  /// `from`: the revision after which the key's disappearance ends the term (the revision the
  /// win was confirmed at + 1).
  Term(LeaderKey key, std::int64_t from, std::shared_ptr<LeaseState> lease,
       std::shared_ptr<ElectionFeed> feed);
  ~Term() override;

  /// Starts watching; `on_end` is called once, when the term ends.
  void start(OnEnd on_end);

  void end(boost::system::error_code why);

  bool ended() const { return ended_.is_set(); }
  /// True while it has not ended and the lease's local deadline has not passed.
  bool leading() const;
  const boost::system::error_code& reason() const { return reason_; }
  const LeaderKey& key() const { return key_; }
  const std::shared_ptr<LeaseState>& lease() const { return lease_; }
  AsyncEvent& ended_event() { return ended_; }

  void on_view() override;
  void on_failed(boost::system::error_code reason, const std::string& message) override;

  void on_lease_lost(boost::system::error_code reason) override { end(reason); }
  /// A lease of its own is lost at its deadline; a Session's lives on past it (its candidates
  /// in line keep their place) and says when the deadline passed.
  void on_lease_deadline() override;

 private:
  LeaderKey key_;
  std::int64_t from_;
  std::shared_ptr<LeaseState> lease_;
  std::shared_ptr<ElectionFeed> feed_;
  AsyncEvent ended_;
  boost::system::error_code reason_;
  OnEnd on_end_;
  bool subscribed_ = false;
};

}  // namespace election::detail
