#include "campaign.hpp"

#include "campaign_engine.hpp"
#include "election/first_of.hpp"
#include "election_feed.hpp"
#include "entry_batcher.hpp"
#include "kv.hpp"
#include "notifier.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace election::detail {

namespace asio = boost::asio;
using boost::system::error_code;
using boost::system::system_error;
using Do = CampaignEngine::Do;

namespace {

// The campaign's place among the election feed's listeners: any change of the view, or the
// feed's failure, wakes the driver.
class FeedWatch : public FeedListener {
 public:
  // The campaign's entry reads the line: the feed, if it starts now, starts from that.
  FeedWatch(std::shared_ptr<ElectionFeed> feed, asio::any_io_executor executor)
      : feed(std::move(feed)), changed(std::move(executor)) {
    this->feed->subscribe(this, true);
    this->feed->resume();  // a feed stopped by an earlier failure is tried again
  }
  ~FeedWatch() override {
    feed->unsubscribe(this);  // the last listener stops the feed
    feed->unseeded();         // for the feed's other listeners, if the entry never came
  }
  FeedWatch(const FeedWatch&) = delete;
  FeedWatch& operator=(const FeedWatch&) = delete;

  void on_view() override { changed.notify(); }
  void on_failed(error_code reason, const std::string& message) override {
    failure = {reason, message};
    changed.notify();
  }

  /// The key is in line from now on: a gap in the watch after this makes the view need a read.
  void entered() { gaps_at_entry = feed->gaps(); }

  CampaignEngine::View view(const std::string& own_key, TimeSource::time_point now) const {
    CampaignEngine::View v;
    v.synced = feed->synced();
    v.revision = feed->revision();
    if (auto first = feed->view().first()) v.first = first->create_revision;
    if (const auto* own = feed->view().find(own_key)) {
      v.own = own->create_revision;
      v.own_lease = own->lease;
    }
    v.contiguous = feed->gaps() == gaps_at_entry;
    v.vacancy_signed = feed->vacancy().signed_by_owner;
    v.since_vacancy = now - feed->vacancy().seen_at;
    return v;
  }

  std::shared_ptr<ElectionFeed> feed;
  std::uint64_t gaps_at_entry = 0;
  Notifier changed;
  std::optional<std::pair<error_code, std::string>> failure;
};

// The lease's loss, as this campaign's own event: thousands of campaigns on one Session's lease
// each race their waits against it, and waits on one shared timer cost a walk of all of them
// whenever one is cut short. A table entry in the lease (LeaseListener) instead.
class LossWatch : public LeaseListener {
 public:
  explicit LossWatch(asio::any_io_executor executor) : lost(std::move(executor)) {}
  ~LossWatch() { release(); }
  LossWatch(const LossWatch&) = delete;
  LossWatch& operator=(const LossWatch&) = delete;

  void watch(const std::shared_ptr<LeaseState>& lease, const std::shared_ptr<LossWatch>& self) {
    release();
    lease_ = lease;
    lease->listen(this, self);
  }
  void on_lease_lost(error_code) override { lost.set(); }
  void on_lease_deadline() override {}

  AsyncEvent lost;

 private:
  void release() {
    if (lease_) lease_->unlisten(this);
    lease_.reset();
  }
  std::shared_ptr<LeaseState> lease_;
};

// In line, a lease is held past its local deadline (see LeaseState::hold_past_deadline). A
// Session's lease is held for good: the campaign leaves it as it is.
class HoldPastDeadline {
 public:
  ~HoldPastDeadline() { release(); }
  void hold(const std::shared_ptr<LeaseState>& lease) {
    release();
    if (lease->shared) return;
    lease_ = lease;
    lease_->hold_past_deadline = true;
  }
  void release() {
    if (lease_) lease_->hold_past_deadline = false;
    lease_.reset();
  }

 private:
  std::shared_ptr<LeaseState> lease_;
};

// Puts the candidate in line: its key created with the lease unless it exists, in a guarded
// transaction shared with the other campaigns of the moment (EntryBatcher) that also reads the
// election's line, from which the feed starts. Returns the key's create revision and the
// revision it is in line as of.
asio::awaitable<std::pair<std::int64_t, std::int64_t>> enter_line(
    const std::shared_ptr<ClientCore>& core, FeedWatch& line, const std::string& election,
    const std::string& own_key, const std::string& value, std::int64_t lease) {
  auto batcher = EntryBatcher::of(core);
  const auto prefix = election + "/";
  for (;;) {
    // Named, not a temporary in the co_await: g++ 12 destroys such a temporary twice.
    EntryBatcher::Entry entry{own_key, value, lease, prefix, prefix_end(prefix)};
    auto entered = co_await batcher->enter(std::move(entry));
    line.feed->seed(entered.line, entered.revision);
    if (entered.created) co_return std::pair{entered.revision, entered.revision};
    const auto& kv = *entered.existing;
    const auto created = kv.create_revision();
    if (kv.value() == value && kv.lease() == lease) co_return std::pair{created, entered.revision};
    // Kept from before with another value, or put again without our lease: ours again, in its
    // place (guarded by its create revision), as etcd's own Campaign does.
    auto update = guarded_by(own_key, created);
    put_candidate(update, own_key, value, lease);
    auto updated = co_await core->call_retrying(
        "campaign", core->kv().async(), &etcdserverpb::KV::Stub::async::Txn, std::move(update));
    if (updated.succeeded()) co_return std::pair{created, updated.header().revision()};
  }
}

asio::awaitable<void> sleep(asio::any_io_executor executor, std::chrono::milliseconds d) {
  asio::steady_timer timer(std::move(executor), d);
  co_await timer.async_wait(asio::use_awaitable);
}

}  // namespace

asio::awaitable<Won> run_campaign(CampaignRequest request, std::shared_ptr<LeaseState>& slot) {
  auto core = request.core;
  // The campaign's own hold on its lease: whoever stops it may empty the slot meanwhile.
  auto lease = slot;
  const auto executor = core->executor();
  CampaignEngine engine(
      {request.takeover_delay, core->options().request_timeout, std::chrono::milliseconds(500)});
  FeedWatch line(ElectionFeed::of(core, request.election), executor);
  HoldPastDeadline hold;
  std::string own_key;
  std::chrono::milliseconds waited{0};  // of the takeover delay, after the win

  auto loss = std::make_shared<LossWatch>(executor);
  auto step = engine.start(lease && !lease->lost() ? std::optional(lease->id) : std::nullopt);
  if (step.what == Do::enter) {
    loss->watch(lease, loss);
    hold.hold(lease);
    own_key = candidate_key(request.election, lease->id);
  }
  for (;;) {
    // Every wait below is raced against the lease's loss: a lost lease ends the campaign.
    switch (step.what) {
      case Do::grant: {
        lease = co_await grant_lease(core, request.ttl, request.margin);
        slot = lease;
        loss->watch(lease, loss);
        hold.hold(lease);
        own_key = candidate_key(request.election, lease->id);
        step = engine.granted(lease->id);
        break;
      }
      case Do::enter: {
        std::optional<CampaignEngine::Step> failed;
        try {
          auto entered = co_await first_of(
              enter_line(core, line, request.election, own_key, request.value, lease->id),
              loss->lost.wait());
          if (entered.index() == 1) {
            step = engine.lease_lost(lease->lost_reason);
            break;
          }
          const auto [created, revision] = std::get<0>(entered);
          line.entered();
          step = engine.entered(created, revision);
          if (request.in_line) request.in_line();
        } catch (const system_error& e) {
          failed = engine.failed(Do::enter, e.code(), e.what());
        }
        if (failed) {
          line.feed->unseeded();  // the feed reads the line itself, while this waits
          step = *failed;
        }
        break;
      }
      case Do::wait: {
        const auto viewed = [&] {
          return engine.viewed(line.view(own_key, core->time().now()), !lease->past_deadline());
        };
        step = viewed();
        while (step.what == Do::wait) {
          if (line.failure) {
            step = engine.failed(Do::wait, line.failure->first, line.failure->second);
            break;
          }
          auto woke = co_await first_of(line.changed.wait(), loss->lost.wait());
          if (woke.index() == 1) {
            step = engine.lease_lost(lease->lost_reason);
            break;
          }
          if (!line.failure) step = viewed();
        }
        break;
      }
      case Do::confirm: {
        std::optional<CampaignEngine::Step> failed;
        try {
          // Linearizable: it sees every write etcd had committed when it was asked.
          etcdserverpb::RangeRequest read;
          read.set_key(own_key);
          read.set_keys_only(true);
          auto reply = co_await first_of(
              core->call_retrying("campaign", core->kv().async(),
                                  &etcdserverpb::KV::Stub::async::Range, std::move(read)),
              loss->lost.wait());
          if (reply.index() == 1) {
            step = engine.lease_lost(lease->lost_reason);
            break;
          }
          const auto& found = std::get<0>(reply);
          std::optional<CampaignEngine::Found> key;
          if (found.kvs_size() == 1)
            key = CampaignEngine::Found{found.kvs(0).create_revision(), found.kvs(0).lease()};
          step = engine.confirmed(key, found.header().revision(), !lease->past_deadline());
        } catch (const system_error& e) {
          failed = engine.failed(Do::confirm, e.code(), e.what());
        }
        if (failed) step = *failed;
        break;
      }
      case Do::pause:
      case Do::settle: {
        const auto was = step.what;
        if (was == Do::settle) waited = step.delay;
        auto waited = co_await first_of(sleep(executor, step.delay), loss->lost.wait());
        if (waited.index() == 1)
          step = engine.lease_lost(lease->lost_reason);
        else
          step = was == Do::pause ? engine.paused() : engine.settled();
        break;
      }
      case Do::await_renewal: {
        // Won while no renewal has been answered within the deadline (etcd was away for a
        // while): lead only once one is, so the deadline again bounds how long etcd can keep
        // the key.
        const auto give_up = std::chrono::steady_clock::now() + step.delay;
        while (lease->past_deadline() && !lease->lost() &&
               std::chrono::steady_clock::now() < give_up) {
          auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
              give_up - std::chrono::steady_clock::now());
          co_await first_of(lease->renewed.wait(), sleep(executor, left));
        }
        if (lease->lost())
          step = engine.lease_lost(lease->lost_reason);
        else
          step = engine.renewed(!lease->past_deadline());
        break;
      }
      case Do::lead:
        co_return Won{LeaderKey{request.election, own_key, engine.own_revision(), lease->id},
                      engine.read_revision(), waited};
      case Do::fail:
        throw system_error(step.error, step.message);
    }
  }
}

}  // namespace election::detail
