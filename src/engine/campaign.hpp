// One campaign's I/O: it carries out CampaignEngine's steps against etcd.
// Private to the library.
#pragma once

#include "election/options.hpp"
#include "election/values.hpp"
#include "engine/election_feed.hpp"
#include "lease/lease_state.hpp"
#include "transport/client_core.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace election::detail {

struct CampaignRequest {
  std::shared_ptr<ClientCore> core;
  std::string election;
  std::string value;
  std::chrono::seconds ttl;
  std::chrono::milliseconds margin;
  std::chrono::milliseconds takeover_delay;
  /// Called on the Client's executor each time the candidate's key is in line (entered, or
  /// entered again after it was deleted); may be empty.
  std::function<void()> in_line;
  /// Called on the Client's executor when the campaign's lease is lost: whoever runs the
  /// campaign stops it then (it ends with the lease's reason), as it would for a resign.
  std::function<void(boost::system::error_code)> lost;
  /// A try (Mutex::try_lock): fail with errc::lock_held once another key is seen first,
  /// instead of waiting in line.
  bool only_if_first = false;
  /// The fence (create revision) of this participant's last term: a key found in line on the
  /// lease with one at or below it is that term's (or older), and is replaced, so that the new
  /// term's fence is greater than every earlier one's.
  std::int64_t last_fence = 0;
};

/// Keeps an election's feed running (and its watch where it is) while its listeners change
/// hands: a won campaign's view goes on as its term's, without a read of the election or a
/// watch made again.
class FeedHold : public FeedListener {
 public:
  explicit FeedHold(std::shared_ptr<ElectionFeed> feed) : feed_(std::move(feed)) {
    feed_->subscribe(this);
  }
  ~FeedHold() override { feed_->unsubscribe(this); }
  FeedHold(const FeedHold&) = delete;
  FeedHold& operator=(const FeedHold&) = delete;

 private:
  std::shared_ptr<ElectionFeed> feed_;
};

struct Won {
  LeaderKey key;
  /// The revision the win was decided at (the view's, or a confirming read's): the term
  /// watches from after it.
  std::int64_t read_revision;
  /// What the win waited of the takeover delay (0 after a signed resignation).
  std::chrono::milliseconds waited;
  /// The campaign's feed, held until the term has subscribed to it.
  std::shared_ptr<FeedHold> feed;
};

/// Runs one campaign to its win (see CampaignEngine for the protocol). `lease` is the
/// participant's lease slot: a live lease there is used, a new one is put there as soon as it
/// is granted, so that whoever stops the campaign can withdraw it. While the campaign runs the
/// lease is held past its local deadline (LeaseState::hold_past_deadline). Throws the engine's
/// failure (a lost lease, refused credentials, no permission, the client closed) or
/// operation_aborted when cancelled; withdrawing the lease is the caller's. `request` must live
/// until it completes (the caller's, by reference: it is not copied into every campaign's
/// frame).
boost::asio::awaitable<Won> run_campaign(const CampaignRequest& request,
                                         std::shared_ptr<LeaseState>& lease);

}  // namespace election::detail
