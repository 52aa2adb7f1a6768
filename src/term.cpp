#include "term.hpp"

#include "election/first_of.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>

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
}

void Term::start(OnEnd on_end) {
  on_end_ = std::move(on_end);
  feed_->subscribe(this);
  subscribed_ = true;
  asio::co_spawn(lease_->core->executor(), watch_lease(shared_from_this()),
                 asio::bind_cancellation_slot(stop_.slot(), [](std::exception_ptr) {}));
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
  if (subscribed_) {
    subscribed_ = false;
    feed_->unsubscribe(this);
  }
  stop_.emit(asio::cancellation_type::terminal);
  if (auto on_end = std::move(on_end_)) on_end(*this);
}

void Term::on_view() {
  if (ended() || !feed_->synced() || feed_->revision() < from_ - 1) return;
  const auto* own = feed_->view().find(key_.key);
  if (!own || own->create_revision != key_.create_revision) end(errc::key_deleted);
}

void Term::on_failed(error_code reason, const std::string&) { end(reason); }

asio::awaitable<void> Term::watch_lease(std::shared_ptr<Term> self) {
  auto lease = self->lease_;
  // A lease of its own is lost at its deadline; a Session's lives on past it (its candidates in
  // line keep their place), and says when the deadline passed.
  while (!self->ended()) {
    auto result = co_await first_of(first_of(lease->lost_event.wait(), self->ended_.wait()),
                                    lease->deadline_passed.wait());
    if (result.index() == 0) {
      if (std::get<0>(result).index() == 0) self->end(lease->lost_reason);
      co_return;
    }
    if (lease->past_deadline()) self->end(errc::lease_deadline_passed);
  }
}

}  // namespace election::detail
