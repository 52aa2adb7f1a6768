#include "engine/campaign.hpp"

#include "base/notifier.hpp"
#include "election/first_of.hpp"
#include "engine/campaign_engine.hpp"
#include "engine/election_feed.hpp"
#include "engine/entry_batcher.hpp"
#include "transport/kv.hpp"

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

// The lease's loss ends the campaign from outside (CampaignRequest::lost), as a resign does:
// nothing in here races its waits against it. Thousands of campaigns on one Session's lease
// would otherwise each keep a race (frames for both sides) open for as long as they wait, and
// a shared event's timer walks every waiter when one of them is cut short. A table entry in the
// lease (LeaseListener) instead.
class LossWatch : public LeaseListener {
 public:
  explicit LossWatch(std::function<void(error_code)> lost) : lost_(std::move(lost)) {}
  ~LossWatch() { release(); }
  LossWatch(const LossWatch&) = delete;
  LossWatch& operator=(const LossWatch&) = delete;

  void watch(const std::shared_ptr<LeaseState>& lease, const std::shared_ptr<LossWatch>& self) {
    release();
    lease_ = lease;
    lease->listen(this, self);
  }
  void on_lease_lost(error_code reason) override {
    if (lost_) lost_(reason);
  }
  void on_lease_deadline() override {}

 private:
  void release() {
    if (lease_) lease_->unlisten(this);
    lease_.reset();
  }
  std::function<void(error_code)> lost_;
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
    const std::string& own_key, const std::string& value, std::int64_t lease,
    std::int64_t last_fence) {
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
    if (created <= last_fence) {
      // An earlier term's key, still on the lease: a term fenced by it again would take that
      // term's late writes for its own. It goes (guarded by its create revision), then in anew.
      auto drop = guarded_by(own_key, created);
      drop.add_success()->mutable_request_delete_range()->set_key(own_key);
      co_await core->call_retrying("campaign", core->kv().async(),
                                   &etcdserverpb::KV::Stub::async::Txn, std::move(drop));
      continue;
    }
    // Found as it is: the view holds it once it is as new as the key's last write. Not the
    // Txn's revision, which etcd moved on with writes elsewhere: no event of this line will
    // bring the view there (the Txn wrote nothing), and the campaign would wait for one.
    if (kv.value() == value && kv.lease() == lease) co_return std::pair{created, kv.mod_revision()};
    // Kept from before with another value, or put again without our lease: ours again, in its
    // place (guarded by its create revision), as etcd's own Campaign does.
    auto update = guarded_by(own_key, created);
    put_candidate(update, own_key, value, lease);
    auto updated = co_await core->call_retrying(
        "campaign", core->kv().async(), &etcdserverpb::KV::Stub::async::Txn, std::move(update));
    if (updated.succeeded()) co_return std::pair{created, updated.header().revision()};
  }
}

// The rare steps in coroutines of their own, so that their locals do not take room in the frame
// of every campaign in line (thousands at once on a Session).

// After a gap in the watch: a linearizable read of the key, which sees every write etcd had
// committed when it was asked.
asio::awaitable<std::pair<std::optional<CampaignEngine::Found>, std::int64_t>> read_key(
    ClientCore& core, const std::string& own_key) {
  etcdserverpb::RangeRequest read;
  read.set_key(own_key);
  read.set_keys_only(true);
  const auto found = co_await core.call_retrying(
      "campaign", core.kv().async(), &etcdserverpb::KV::Stub::async::Range, std::move(read));
  std::optional<CampaignEngine::Found> key;
  if (found.kvs_size() == 1)
    key = CampaignEngine::Found{found.kvs(0).create_revision(), found.kvs(0).lease()};
  co_return std::pair{key, found.header().revision()};
}

asio::awaitable<void> sleep(asio::any_io_executor executor, std::chrono::milliseconds d);

// Won while no renewal has been answered within the deadline (etcd was away for a while):
// lead only once one is, so the deadline again bounds how long etcd can keep the key.
asio::awaitable<void> await_renewal(LeaseState& lease, std::chrono::milliseconds patience) {
  const auto give_up = std::chrono::steady_clock::now() + patience;
  while (lease.past_deadline() && !lease.lost() && std::chrono::steady_clock::now() < give_up) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        give_up - std::chrono::steady_clock::now());
    co_await first_of(lease.renewed.wait(), sleep(lease.core->executor(), left));
  }
}

asio::awaitable<void> sleep(asio::any_io_executor executor, std::chrono::milliseconds d) {
  asio::steady_timer timer(std::move(executor), d);
  co_await timer.async_wait(asio::use_awaitable);
}

}  // namespace

asio::awaitable<Won> run_campaign(const CampaignRequest& request,
                                  std::shared_ptr<LeaseState>& slot) {
  auto core = request.core;
  // The campaign's own hold on its lease: whoever stops it may empty the slot meanwhile.
  auto lease = slot;
  const auto executor = core->executor();
  CampaignEngine engine({request.takeover_delay, core->options().request_timeout,
                         std::chrono::milliseconds(500), request.only_if_first});
  FeedWatch line(ElectionFeed::of(core, request.election), executor);
  HoldPastDeadline hold;
  std::string own_key;
  std::chrono::milliseconds waited{0};  // of the takeover delay, after the win

  auto loss = std::make_shared<LossWatch>(request.lost);
  auto step = engine.start(lease && !lease->lost() ? std::optional(lease->id) : std::nullopt);
  if (step.what == Do::enter) {
    loss->watch(lease, loss);
    hold.hold(lease);
    own_key = candidate_key(request.election, lease->id);
  }
  for (;;) {
    // A lost lease stops the campaign from outside (CampaignRequest::lost); a step that finds
    // it lost says so too.
    if (lease && lease->lost() && step.what != Do::grant && step.what != Do::fail)
      step = engine.lease_lost(lease->lost_reason);
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
          const auto [created, revision] = co_await enter_line(
              core, line, request.election, own_key, request.value, lease->id, request.last_fence);
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
          co_await line.changed.wait();
          if (lease->lost()) {
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
          const auto [key, revision] = co_await read_key(*core, own_key);
          step = engine.confirmed(key, revision, !lease->past_deadline(),
                                  line.view(own_key, core->time().now()));
        } catch (const system_error& e) {
          failed = engine.failed(Do::confirm, e.code(), e.what());
        }
        if (failed) step = *failed;
        break;
      }
      case Do::pause:
      case Do::settle: {
        const auto was = step.what;
        if (was == Do::settle) waited = step.delay;  // once per place in line
        co_await sleep(executor, step.delay);
        step = was == Do::pause ? engine.paused() : engine.settled();
        break;
      }
      case Do::await_renewal: {
        co_await await_renewal(*lease, step.delay);
        if (lease->lost())
          step = engine.lease_lost(lease->lost_reason);
        else
          step = engine.renewed(!lease->past_deadline());
        break;
      }
      case Do::lead:
        co_return Won{LeaderKey{request.election, own_key, engine.own_revision(), lease->id},
                      engine.read_revision(), waited, std::make_shared<FeedHold>(line.feed)};
      case Do::fail:
        throw system_error(step.error, step.message);
    }
  }
}

}  // namespace election::detail
