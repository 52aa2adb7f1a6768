#include "engine/term.hpp"

namespace election::detail {

namespace asio = boost::asio;
using boost::system::error_code;

Term::Term(LeaderKey key, std::int64_t from, std::shared_ptr<LeaseState> lease,
           std::shared_ptr<ElectionFeed> feed)
    : key_(std::move(key)),
      from_(from),
      lease_(std::move(lease)),
      feed_(std::move(feed)),
      ended_(lease_->core->executor()) {}

Term::~Term() {
  if (subscribed_) feed_->unsubscribe(this);
  lease_->unlisten(this);
}

void Term::start(OnEnd on_end) {
  on_end_ = std::move(on_end);
  feed_->subscribe(this);
  subscribed_ = true;
  lease_->listen(this, weak_from_this());
  on_view();  // the feed may already show the key gone
}

bool Term::leading() const { return !ended() && !lease_->lost() && !lease_->past_deadline(); }

void Term::end(error_code why) {
  if (ended()) return;
  // Past the local deadline the term ended then, earlier than whatever is noticed now: say so,
  // or a caller trusting the reason (and a deadline it reports with it) believes it led until
  // it noticed. A resign or a destroyed participant is the caller's own end.
  const bool own = why == errc::resigned || why == asio::error::operation_aborted;
  if (!own && lease_->past_deadline()) why = errc::lease_deadline_passed;
  reason_ = why;
  ended_.set();
  // The withdrawal first: its request (a signed resignation, or the revocation) leaves before
  // the feed's watch is cancelled (a write on the Watch stream), so the next candidate leads
  // that much sooner. A signed resignation holds the cancel back further, in the WatchHub,
  // until etcd has answered it (Withdrawal::start).
  if (auto on_end = std::move(on_end_)) on_end(*this);
  if (subscribed_) {
    subscribed_ = false;
    feed_->unsubscribe(this);
  }
  lease_->unlisten(this);
}

void Term::on_view() {
  if (ended() || !feed_->synced() || feed_->revision() < from_ - 1) return;
  const auto* own = feed_->view().find(key_.key);
  if (!own || own->create_revision != key_.create_revision) end(errc::key_deleted);
}

void Term::on_failed(error_code reason, const std::string&) { end(reason); }

void Term::on_lease_deadline() {
  if (lease_->past_deadline()) end(errc::lease_deadline_passed);
}

}  // namespace election::detail
