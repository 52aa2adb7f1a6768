#include "client.hpp"

#include "base/keys.hpp"
#include "election/lease.hpp"

#include <algorithm>

namespace election::sim {

using detail::CampaignEngine;
using detail::RenewalPlan;
using Action = RenewalPlan::Action;

namespace {

const char* step_name(CampaignEngine::Do d) {
  switch (d) {
    case CampaignEngine::Do::grant:
      return "grant";
    case CampaignEngine::Do::enter:
      return "enter";
    case CampaignEngine::Do::wait:
      return "wait";
    case CampaignEngine::Do::confirm:
      return "confirm";
    case CampaignEngine::Do::pause:
      return "pause";
    case CampaignEngine::Do::await_renewal:
      return "await-renewal";
    case CampaignEngine::Do::settle:
      return "settle";
    case CampaignEngine::Do::lead:
      return "lead";
    case CampaignEngine::Do::fail:
      return "fail";
  }
  return "?";
}

std::string reason_text(errc e) { return make_error_code(e).message(); }

std::string ms_text(Duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

}  // namespace

Client::Client(World& world, int index, std::uint64_t seed)
    : world_(world),
      index_(index),
      name_("c" + std::to_string(index + 1)),
      value_("v" + std::to_string(index + 1)),
      rng_(seed),
      plan_(rng_.next()),
      w_backoff_(std::chrono::milliseconds(50), std::chrono::seconds(2), rng_.next()),
      feed_backoff_(std::chrono::milliseconds(100), std::chrono::seconds(2), rng_.next()),
      backoff_(std::chrono::milliseconds(100), std::chrono::seconds(5), rng_.next()) {}

void Client::trace(const std::string& what) const {
  if (world_.tracing()) world_.trace(name_, what);
}

void Client::start() {
  // A Leadership runs an Observer for its whole run: the election's feed is always on.
  feed_read();
  acquire();
}

bool Client::believes() const {
  return term_ && !term_->ended && !term_->lease->lost && !past_deadline(*term_->lease);
}

std::optional<ClientTerm> Client::belief() const {
  if (!believes()) return std::nullopt;
  return term_->key;
}

std::optional<std::int64_t> Client::term_lease() const {
  if (!term_) return std::nullopt;
  return term_->key.lease;
}

// --- transport: ClientCore::call_retrying ------------------------------------------------------

struct Client::Call {
  const char* what;
  bool needs_leader;
  std::function<Reply(Store&)> apply;
  std::function<void(std::optional<Reply>)> done;
  Time end;
  detail::Backoff backoff;
  std::uint64_t attempt = 0;
  bool finished = false;
};

std::chrono::milliseconds Client::attempt_timeout() const {
  using std::chrono::milliseconds;
  constexpr milliseconds request_timeout(5000);
  if (!rtt_.known()) return std::clamp<milliseconds>(request_timeout / 3, milliseconds(500), 2s);
  const auto wanted = std::chrono::duration_cast<milliseconds>(2 * rtt_.timeout(milliseconds(250)));
  return std::clamp<milliseconds>(wanted, milliseconds(500), request_timeout);
}

void Client::call(const char* what, bool needs_leader, std::function<Reply(Store&)> apply,
                  std::function<void(std::optional<Reply>)> done) {
  auto c =
      std::shared_ptr<Call>(new Call{what, needs_leader, std::move(apply), std::move(done),
                                     world_.now() + 5s, detail::Backoff(50ms, 500ms, rng_.next())});
  attempt(std::move(c));
}

void Client::attempt(std::shared_ptr<Call> c) {
  const auto n = ++c->attempt;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c->end - world_.now());
  const auto limit = std::clamp(left, std::chrono::milliseconds(1), attempt_timeout());
  auto finish = [c](std::optional<Reply> r) {
    c->finished = true;
    c->done(std::move(r));
  };
  world_.unary(index_, c->needs_leader, c->apply, [this, c, n, finish](Reply r) {
    if (c->finished || c->attempt != n) return;
    if (r.status != Reply::Status::unavailable) {
      finish(std::move(r));
      return;
    }
    ++c->attempt;  // this attempt's deadline no longer counts
    if (world_.now() + 50ms >= c->end) {
      finish(std::nullopt);
      return;
    }
    world_.at(world_.now() + c->backoff.next(), index_, [this, c] {
      if (!c->finished) attempt(c);
    });
  });
  world_.at(world_.now() + limit, index_, [this, c, n, finish] {
    if (c->finished || c->attempt != n) return;
    if (world_.now() + 50ms >= c->end) {
      finish(std::nullopt);  // DEADLINE_EXCEEDED: transient
      return;
    }
    attempt(c);
  });
}

// --- keep-alive: KeepAliveHub ------------------------------------------------------------------

void Client::hub_add(const std::shared_ptr<LeaseRec>& lease, Duration grant_rtt) {
  hub_leases_[lease->id] = lease;
  plan_.add(lease->id, &lease->clock, &lease->hold);
  if (!plan_.rtt().known()) plan_.on_rtt_sample(grant_rtt);
  if (hub_running_) {
    hub_poke();
    return;
  }
  hub_running_ = true;
  const auto gen = ++hub_wake_;
  world_.post(index_, [this, gen] {
    if (gen == hub_wake_) hub_drive();
  });
}

void Client::hub_remove(std::int64_t id) {
  plan_.remove(id);
  // RenewalPlan reads a lease's clock until remove(); under the renew_after_resign mutation
  // that is never, so every lease it was given stays alive as long as the plan.
  if (auto it = hub_leases_.find(id); it != hub_leases_.end()) kept_.push_back(it->second);
  if (hub_leases_.erase(id) && hub_leases_.empty()) hub_poke();
}

void Client::hub_poke() {
  if (!hub_running_) return;
  const auto gen = ++hub_wake_;
  world_.post(index_, [this, gen] {
    if (gen == hub_wake_) hub_drive();
  });
}

void Client::hub_drive() {
  for (const auto& a : plan_.step(world_.now())) hub_apply(a);
  if (plan_.empty()) {
    for (const auto& [plan_id, sim_id] : ka_streams_) world_.close_stream(sim_id);
    ka_streams_.clear();
    hub_running_ = false;
    return;
  }
  const auto wake = plan_.next_wake();
  if (wake == Time::max()) return;
  const auto gen = ++hub_wake_;
  world_.at(wake, index_, [this, gen] {
    if (gen == hub_wake_) hub_drive();
  });
}

void Client::hub_apply(const Action& a) {
  switch (a.kind) {
    case Action::Kind::open_stream: {
      ka_streams_[a.stream] = world_.open_stream(index_);
      trace("keep-alive stream " + std::to_string(ka_streams_[a.stream]) + " opened");
      break;
    }
    case Action::Kind::send: {
      auto it = ka_streams_.find(a.stream);
      const auto lease = a.lease;
      const auto sent = world_.now();
      bool written = false;
      if (it != ka_streams_.end())
        written = world_.stream_up(
            it->second, [this, lease, sent](Stream& s) { world_.keep_alive(s, lease, sent); });
      if (!written) {
        if (it != ka_streams_.end()) ka_streams_.erase(it);
        plan_.on_stream_broken(a.stream, world_.now());
        hub_poke();
      } else {
        trace("renewal of " + lease_hex(lease) + " sent on stream " + std::to_string(it->second));
      }
      break;
    }
    case Action::Kind::close_stream:
      if (auto it = ka_streams_.find(a.stream); it != ka_streams_.end()) {
        world_.close_stream(it->second);
        ka_streams_.erase(it);
      }
      break;
    case Action::Kind::deadline:
      if (auto it = hub_leases_.find(a.lease); it != hub_leases_.end()) {
        auto lease = it->second;
        // LeaseState::deadline_passed: the term on it hears (posted), a campaign does not.
        world_.post(index_, [this, lease] {
          if (term_ && !term_->ended && term_->lease == lease && past_deadline(*lease))
            term_end(errc::lease_deadline_passed);
        });
      }
      break;
    case Action::Kind::lose:
      hub_lose(a.lease, a.reason);
      break;
  }
}

void Client::hub_lose(std::int64_t id, errc reason) {
  plan_.remove(id);
  auto it = hub_leases_.find(id);
  if (it == hub_leases_.end()) return;
  auto lease = std::move(it->second);
  hub_leases_.erase(it);
  lose(lease, reason);
}

void Client::on_keep_alive(std::uint64_t stream, std::int64_t lease, std::chrono::seconds ttl) {
  auto it = std::find_if(ka_streams_.begin(), ka_streams_.end(),
                         [&](const auto& p) { return p.second == stream; });
  if (ttl.count() == 0) told_lost_.insert(lease);
  if (it == ka_streams_.end()) return;  // closed by the plan: nothing owed on it helps
  const auto before = plan_.counters().answered;
  auto lost = plan_.on_reply(it->first, lease, ttl, world_.now());
  if (plan_.counters().answered != before) {
    rtt_.sample(plan_.last_rtt());
    if (auto l = hub_leases_.find(lease); l != hub_leases_.end() && !lost) {
      trace("renewal of " + lease_hex(lease) + " answered, TTL " + std::to_string(ttl.count()) +
            " s; deadline in " + ms_text(l->second->clock.deadline() - world_.now()));
      // LeaseState::renewed: a win waiting for a renewal in time looks again.
      if (campaigning_ && step_.what == Do::await_renewal && c_lease_ == l->second) {
        const auto gen = campaign_;
        world_.post(index_, [this, gen] {
          if (gen == campaign_) campaign_run();
        });
      }
    }
  }
  if (lost) hub_apply(*lost);
}

void Client::on_stream_broken(std::uint64_t stream) {
  auto it = std::find_if(ka_streams_.begin(), ka_streams_.end(),
                         [&](const auto& p) { return p.second == stream; });
  if (it != ka_streams_.end()) {
    trace("keep-alive stream " + std::to_string(stream) + " broken");
    const auto plan_id = it->first;
    ka_streams_.erase(it);
    plan_.on_stream_broken(plan_id, world_.now());
    hub_poke();
    return;
  }
  if (w_stream_ && *w_stream_ == stream) {
    trace("watch stream " + std::to_string(stream) + " broken");
    const bool heard = heard_on_stream_;
    watch_drop();
    if (heard) w_backoff_.reset();
    retry_at_ = world_.now() + w_backoff_.next();
    watch_wake(world_.now());
  }
}

// --- the lease: LeaseState ---------------------------------------------------------------------

void Client::lose(const std::shared_ptr<LeaseRec>& lease, errc reason) {
  if (lease->lost) return;
  lease->lost = true;
  lease->lost_reason = reason;
  trace("lease " + lease_hex(lease->id) + " lost: " + reason_text(reason));
  // Its listeners hear posted: a term on it, a campaign racing its waits against it.
  world_.post(index_, [this, lease, reason] {
    if (term_ && !term_->ended && term_->lease == lease) term_end(reason);
  });
  if (campaigning_ && c_lease_ == lease) {
    const auto gen = campaign_;
    world_.post(index_, [this, gen] {
      if (gen == campaign_ && campaigning_) campaign_lost_lease();
    });
  }
}

// --- watch: WatchHub ---------------------------------------------------------------------------

Duration Client::stall_timeout() const {
  const auto base = w_rtt_.timeout(std::chrono::milliseconds(500));
  return std::min<Duration>(base * (1 << std::min(silent_stalls_, 4)), std::chrono::seconds(16));
}

void Client::watch(std::string key, std::string end, std::int64_t start) {
  watch_ = WatchState{++last_watch_id_, std::move(key), std::move(end), start};
  if (w_stream_) {
    const auto w = *watch_;
    world_.stream_up(*w_stream_,
                     [this, w](Stream& s) { world_.watch_create(s, w.id, w.key, w.end, w.next); });
  }
  if (!w_running_) {
    w_running_ = true;
    watch_wake(world_.now());
  }
}

void Client::watch_wake(Time at) {
  const auto gen = ++w_wake_;
  world_.at(at, index_, [this, gen] {
    if (gen == w_wake_) watch_drive();
  });
}

void Client::watch_open() {
  w_stream_ = world_.open_stream(index_);
  ++w_generation_;
  heard_on_stream_ = false;
  progress_sent_ = world_.now();  // the create is the first probe
  trace("watch stream " + std::to_string(*w_stream_) + " opened, from revision " +
        (watch_ ? std::to_string(watch_->next) : std::string("-")));
  if (watch_) {
    const auto w = *watch_;
    world_.stream_up(*w_stream_,
                     [this, w](Stream& s) { world_.watch_create(s, w.id, w.key, w.end, w.next); });
  }
}

void Client::watch_drop() {
  if (w_stream_) world_.close_stream(*w_stream_);
  w_stream_.reset();
  ++w_generation_;
  progress_sent_.reset();
}

void Client::watch_drive() {
  if (!watch_) {
    watch_drop();
    w_running_ = false;
    return;
  }
  const auto now = world_.now();
  auto next = now + std::chrono::milliseconds(1000);
  if (!w_stream_) {
    if (now >= retry_at_) {
      watch_open();
      next = world_.now() + stall_timeout();
    } else {
      next = retry_at_;
    }
  } else if (progress_sent_) {
    const auto give_up = *progress_sent_ + stall_timeout();
    if (now >= give_up) {
      // Nothing at all since the probe: the member is frozen or the path to it is dead.
      trace("watch stream " + std::to_string(*w_stream_) + " stalled: opened again");
      if (!heard_on_stream_) ++silent_stalls_;
      watch_drop();
      watch_open();
      next = world_.now() + stall_timeout();
    } else {
      next = give_up;
    }
  } else {
    const auto due = last_heard_ + std::chrono::milliseconds(1000);
    if (now >= due) {
      world_.stream_up(*w_stream_, [this](Stream& s) { world_.watch_progress(s); });
      progress_sent_ = now;
      next = now + stall_timeout();
    } else {
      next = due;
    }
  }
  watch_wake(next);
}

void Client::on_watch(std::uint64_t stream, const WatchMessage& m) {
  if (!w_stream_ || *w_stream_ != stream) return;
  const auto now = world_.now();
  last_heard_ = now;
  heard_on_stream_ = true;
  silent_stalls_ = 0;
  if (progress_sent_) {
    if (m.progress) {
      w_rtt_.sample(now - *progress_sent_);
      rtt_.sample(now - *progress_sent_);
    }
    progress_sent_.reset();
  }
  if (m.progress) return;
  if (m.created) {
    w_backoff_.reset();
    return;
  }
  if (!watch_ || m.watch_id != watch_->id) return;  // cancelled by us meanwhile
  if (m.compact_revision > 0) {
    trace("watch compacted at " + std::to_string(m.compact_revision) + ": the feed reads again");
    watch_.reset();
    // ElectionFeed::on_compacted: history is gone, read the election again.
    ++gaps_;
    feed_read();
    return;
  }
  if (m.events.empty()) return;
  watch_->next = m.events.back().kv.mod_revision + 1;
  feed_events(m.events);
}

// --- the election's feed: ElectionFeed ---------------------------------------------------------

void Client::feed_read() {
  synced_ = false;
  feed_sync(++feed_run_);
}

// ElectionFeed::sync: every candidate read, then watched from the revision after that read;
// while etcd cannot be reached the read is tried again with backoff.
void Client::feed_sync(std::uint64_t run) {
  const auto prefix = world_.election() + "/";
  call(
      "range", true,
      [prefix](Store& store) {
        Reply r;
        r.kvs = store.range(prefix, detail::prefix_end(prefix));
        r.revision = store.revision();
        return r;
      },
      [this, run](std::optional<Reply> r) {
        if (run != feed_run_) return;
        if (!r) {
          world_.at(world_.now() + feed_backoff_.next(), index_, [this, run] {
            if (run == feed_run_) feed_sync(run);
          });
          return;
        }
        feed_backoff_.reset();
        std::vector<LeaderInfo> candidates;
        for (const auto& kv : r->kvs)
          candidates.push_back({kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.lease});
        const auto* before = tracker_.first();
        const auto head_before =
            before ? std::optional(std::pair(before->key, before->create_revision)) : std::nullopt;
        synced_ = true;
        revision_ = r->revision;
        watch(world_.election() + "/", detail::resignations_end(world_.election()),
              r->revision + 1);
        tracker_.reset(std::move(candidates), r->revision);
        // A head this feed did not see change hands: counted as an unsigned vacancy, seen now.
        const auto* after = tracker_.first();
        if (!after || !head_before ||
            std::pair(after->key, after->create_revision) != *head_before) {
          vacancy_signed_ = false;
          vacancy_seen_ = world_.now();
        }
        trace("feed read the election at revision " + std::to_string(r->revision) + ": " +
              std::to_string(r->kvs.size()) + " in line");
        feed_viewed();
      });
}

void Client::feed_events(const std::vector<Event>& events) {
  std::vector<detail::LeaderTracker::Change> changes;
  changes.reserve(events.size());
  for (const auto& e : events)
    changes.push_back(
        {e.deleted, {e.kv.key, e.kv.value, e.kv.create_revision, e.kv.mod_revision, e.kv.lease}});
  revision_ = events.back().kv.mod_revision;
  auto applied = tracker_.apply(world_.election(), changes);
  if (applied.head_removed_signed) {
    vacancy_signed_ = *applied.head_removed_signed;
    vacancy_seen_ = world_.now();
  }
  if (world_.tracing()) {
    std::string what = "feed at revision " + std::to_string(revision_) + ":";
    for (const auto& e : events)
      what += (e.deleted ? " -" : " +") + e.kv.key.substr(0, e.kv.key.find('\0'));
    if (applied.head_removed_signed)
      what += *applied.head_removed_signed ? " (head resigned, signed)" : " (head removed)";
    trace(what);
  }
  feed_viewed();
}

void Client::feed_viewed() {
  // Term::on_view runs inside the feed's dispatch; the campaign is woken (posted).
  term_view();
  if (campaigning_ && step_.what == Do::wait) {
    const auto gen = campaign_;
    world_.post(index_, [this, gen] {
      if (gen == campaign_ && campaigning_ && step_.what == Do::wait) campaign_view();
    });
  }
}

// --- the campaign: run_campaign ----------------------------------------------------------------

void Client::campaign_start() {
  ++campaign_;
  campaigning_ = true;
  give_up_ = Time{};
  engine_.emplace(CampaignEngine::Options{world_.takeover_delay(), 5s, 500ms});
  c_lease_ = lease_;
  step_ = engine_->start(c_lease_ && !c_lease_->lost ? std::optional(c_lease_->id) : std::nullopt);
  if (step_.what == Do::enter) {
    c_lease_->hold = true;
    own_key_ = detail::candidate_key(world_.election(), c_lease_->id);
  }
  campaign_run();
}

CampaignEngine::View Client::view() const {
  CampaignEngine::View v;
  v.synced = synced_;
  v.revision = revision_;
  if (const auto* first = tracker_.first()) v.first = first->create_revision;
  if (const auto* own = tracker_.find(own_key_)) {
    v.own = own->create_revision;
    v.own_lease = own->lease;
  }
  v.contiguous = gaps_ == gaps_at_entry_;
  v.vacancy_signed = vacancy_signed_;
  v.since_vacancy = world_.now() - vacancy_seen_;
  return v;
}

void Client::campaign_view() {
  step_ = engine_->viewed(view(), !past_deadline(*c_lease_));
  if (step_.what == Do::wait) return;  // the feed wakes it again
  campaign_run();
}

void Client::campaign_run() {
  const auto gen = campaign_;
  trace(std::string("campaign: ") + step_name(step_.what) +
        (step_.delay.count() ? " " + ms_text(step_.delay) : std::string()));
  switch (step_.what) {
    case Do::grant:
      grant([this, gen](std::shared_ptr<LeaseRec> lease) {
        if (gen != campaign_) return;
        if (!lease) {
          campaign_failed("lease grant: etcd did not answer in time");
          return;
        }
        c_lease_ = lease;
        lease_ = lease;
        c_lease_->hold = true;
        own_key_ = detail::candidate_key(world_.election(), lease->id);
        step_ = engine_->granted(lease->id);
        campaign_run();
      });
      return;
    case Do::enter:
      enter_line();
      return;
    case Do::wait:
      campaign_view();
      return;
    case Do::confirm: {
      const auto key = own_key_;
      call(
          "campaign", true,
          [key](Store& store) {
            Reply r;
            if (const auto* kv = store.find(key)) r.kvs.push_back(*kv);
            r.revision = store.revision();
            return r;
          },
          [this, gen](std::optional<Reply> r) {
            if (gen != campaign_) return;
            if (!r) {
              step_ = engine_->failed(Do::confirm, errc::timeout, "campaign: timed out");
            } else {
              std::optional<CampaignEngine::Found> found;
              if (r->kvs.size() == 1)
                found = CampaignEngine::Found{r->kvs[0].create_revision, r->kvs[0].lease};
              step_ = engine_->confirmed(found, r->revision, !past_deadline(*c_lease_), view());
            }
            campaign_run();
          });
      return;
    }
    case Do::pause:
    case Do::settle: {
      const bool pause = step_.what == Do::pause;
      world_.at(world_.now() + step_.delay, index_, [this, gen, pause] {
        if (gen != campaign_) return;
        step_ = pause ? engine_->paused() : engine_->settled();
        campaign_run();
      });
      return;
    }
    case Do::await_renewal: {
      // Woken by every renewal answered (on_keep_alive) and at the end of the wait.
      if (give_up_ == Time{}) {
        give_up_ = world_.now() + step_.delay;
        world_.at(give_up_, index_, [this, gen] {
          if (gen == campaign_ && step_.what == Do::await_renewal) campaign_run();
        });
      }
      if (past_deadline(*c_lease_) && !c_lease_->lost && world_.now() < give_up_) return;
      give_up_ = Time{};
      if (c_lease_->lost) {
        campaign_lost_lease();
        return;
      }
      step_ = engine_->renewed(!past_deadline(*c_lease_));
      campaign_run();
      return;
    }
    case Do::lead:
      won();
      return;
    case Do::fail:
      campaign_failed(step_.message);
      return;
  }
}

// The candidate's key in line, created with the lease unless it exists: one guarded Txn, safe
// to send again (campaign.cpp enter_line). The library sends it through EntryBatcher, in a Txn
// shared with other elections' entries that also reads the line to seed a feed not yet running;
// a Leadership's feed always runs (its Observer), and one election per process here puts one
// entry in each Txn, so the outcome is this Txn's.
void Client::enter_line() {
  const auto gen = campaign_;
  const auto key = own_key_;
  const auto value = value_;
  const auto lease = c_lease_->id;
  Txn txn;
  txn.compares.push_back({key, 0});
  txn.success.push_back({Txn::Op::Kind::put, key, value, lease});
  txn.failure.push_back({Txn::Op::Kind::range, key, {}, 0});
  auto entered = [this](std::int64_t created, std::int64_t revision) {
    gaps_at_entry_ = gaps_;
    step_ = engine_->entered(created, revision);
    trace("in line: " + own_key_ + "@" + std::to_string(created));
    campaign_run();
  };
  auto failed = [this](const std::optional<Reply>& r) {
    if (!r)
      step_ = engine_->failed(Do::enter, errc::timeout, "campaign: timed out");
    else
      step_ = engine_->failed(Do::enter, errc::lease_expired,
                              "campaign: etcdserver: requested lease not found");
    campaign_run();
  };
  call(
      "campaign", true,
      [txn](Store& store) {
        Reply r;
        r.txn = store.txn(txn);
        r.revision = r.txn.revision;
        if (r.txn.lease_not_found) r.status = Reply::Status::lease_not_found;
        return r;
      },
      [this, gen, key, value, lease, entered, failed](std::optional<Reply> r) {
        if (gen != campaign_) return;
        if (!r || r->status == Reply::Status::lease_not_found) return failed(r);
        if (r->txn.succeeded) return entered(r->revision, r->revision);
        const auto& kvs = r->txn.ranges.at(0);
        if (kvs.empty()) return enter_line();  // deleted in between: create it
        const auto created = kvs[0].create_revision;
        if (kvs[0].value == value && kvs[0].lease == lease) return entered(created, r->revision);
        // Kept from before with another value, or put again without our lease: ours again,
        // in its place.
        Txn update;
        update.compares.push_back({key, created});
        update.success.push_back({Txn::Op::Kind::put, key, value, lease});
        call(
            "campaign", true,
            [update](Store& store) {
              Reply u;
              u.txn = store.txn(update);
              u.revision = u.txn.revision;
              if (u.txn.lease_not_found) u.status = Reply::Status::lease_not_found;
              return u;
            },
            [this, gen, created, entered, failed](std::optional<Reply> u) {
              if (gen != campaign_) return;
              if (!u || u->status == Reply::Status::lease_not_found) return failed(u);
              if (u->txn.succeeded) return entered(created, u->revision);
              enter_line();
            });
      });
}

void Client::campaign_lost_lease() {
  ++campaign_;
  give_up_ = Time{};  // whatever the campaign waited for no longer counts
  step_ = engine_->lease_lost(c_lease_->lost_reason);
  campaign_run();
}

void Client::campaign_failed(const std::string& why) {
  ++campaign_;
  campaigning_ = false;
  if (c_lease_) c_lease_->hold = false;
  c_lease_.reset();
  trace("campaign failed: " + why);
  // campaign_of: however the campaign ended, its lease goes, and the key with it.
  withdraw();
  // Leadership: a failure that passes by itself is retried after the backoff.
  const auto delay = backoff_.next();
  world_.at(world_.now() + delay, index_, [this] { acquire(); });
}

// --- the term, the withdrawal, the Leadership's loop --------------------------------------------

void Client::grant(std::function<void(std::shared_ptr<LeaseRec>)> done) {
  const auto sent = world_.now();
  const auto ttl = world_.ttl();
  call(
      "lease grant", true,
      [this, ttl](Store& store) {
        Reply r;
        auto [id, granted] = store.grant(ttl, world_.now());
        r.lease = id;
        r.ttl = granted;
        r.revision = store.revision();
        if (world_.tracing())
          world_.trace("etcd", "lease " + lease_hex(id) + " granted to " + name_);
        return r;
      },
      [this, sent, done](std::optional<Reply> r) {
        if (!r) return done(nullptr);
        const auto rtt = world_.now() - sent;
        rtt_.sample(rtt);
        auto lease = std::make_shared<LeaseRec>(
            LeaseRec{r->lease,
                     detail::LeaseClock(sent, r->ttl, detail::LeaseClock::default_margin(r->ttl)),
                     false,
                     false,
                     {}});
        hub_add(lease, rtt);
        done(lease);
      });
}

void Client::acquire() {
  // Leadership's campaign_loop: acquire_lease(), then campaign().
  if (lease_ && lease_->lost) withdraw();
  if (lease_) {
    campaign_start();
    return;
  }
  grant([this](std::shared_ptr<LeaseRec> lease) {
    if (!lease) {
      const auto delay = backoff_.next();
      trace("lease grant failed; again in " + ms_text(delay));
      world_.at(world_.now() + delay, index_, [this] { acquire(); });
      return;
    }
    lease_ = lease;
    campaign_start();
  });
}

void Client::won() {
  // run_campaign's end: the hold on the lease is released; campaign_of starts the term.
  ++campaign_;
  campaigning_ = false;
  c_lease_->hold = false;
  const auto lease = c_lease_;
  c_lease_.reset();
  term_ = Term{{own_key_, engine_->own_revision(), lease->id, world_.now()},
               engine_->read_revision() + 1,
               lease};
  trace("won: " + own_key_ + "@" + std::to_string(engine_->own_revision()) +
        " decided at revision " + std::to_string(engine_->read_revision()) + "; deadline in " +
        ms_text(lease->clock.deadline() - world_.now()));
  if (lease->lost) {
    // The lease went between the last step and now: the term hears at once.
    term_end(lease->lost_reason);
  }
  term_view();  // the feed may already show the key gone
  // Leadership::lead: the elected hook, the work.
  world_.on_win(*this, own_key_, engine_->own_revision(), engine_->read_revision());
  backoff_.reset();
  leading_phase_ = true;
  const auto gen = ++work_;
  if (term_->ended) {
    world_.post(index_, [this, gen] {
      if (gen == work_) lost_leadership();
    });
    return;
  }
  work();
  // Some work ends by itself: the Leadership then resigns (with a signature).
  if (rng_.chance(0.4)) {
    const auto d = rng_.log_between(100ms, 20s);
    world_.at(world_.now() + d, index_, [this, gen] {
      if (gen != work_ || !term_ || term_->ended) return;
      trace("work finished: resign");
      term_end(errc::resigned);
    });
  }
}

void Client::work() {
  // The work writes, fenced by the leader key (put_if_leader), every so often while it leads.
  const auto gen = work_;
  const auto every = rng_.log_between(20ms, world_.ttl() / 2);
  world_.at(world_.now() + every, index_, [this, gen] {
    if (gen != work_ || !term_ || term_->ended) return;
    if (believes()) {
      const auto t = term_->key;
      Txn txn;
      txn.compares.push_back({t.key, t.create_revision});
      txn.success.push_back({Txn::Op::Kind::put, world_.counter_key(),
                             name_ + "@" + std::to_string(t.create_revision), 0});
      // Not retried: a write that etcd may have applied is not sent twice.
      world_.unary(
          index_, true,
          [this, txn, t](Store& store) {
            Reply r;
            r.txn = store.txn(txn);
            world_.on_fenced_write(*this, t.key, t.create_revision, r.txn);
            return r;
          },
          [](Reply) {});
    }
    work();
  });
}

void Client::term_view() {
  if (!term_ || term_->ended || !synced_ || revision_ < term_->from - 1) return;
  const auto* own = tracker_.find(term_->key.key);
  if (!own || own->create_revision != term_->key.create_revision) term_end(errc::key_deleted);
}

void Client::term_end(errc why) {
  if (!term_ || term_->ended) return;
  const bool own = why == errc::resigned;
  if (!own && past_deadline(*term_->lease)) why = errc::lease_deadline_passed;
  term_->ended = true;
  term_->reason = why;
  trace("term of " + term_->key.key + " ended: " + reason_text(why));
  withdraw();  // the term's on_end: nothing renews its lease after
  // Leadership::lead: keep_alive() returns, the work is cancelled, the next campaign waits.
  if (leading_phase_) {
    const auto gen = work_;
    world_.post(index_, [this, gen] {
      if (gen == work_) lost_leadership();
    });
  }
}

void Client::lost_leadership() {
  if (!leading_phase_) return;
  leading_phase_ = false;
  ++work_;
  const auto delay = backoff_.next();
  world_.at(world_.now() + delay, index_, [this] { acquire(); });
}

void Client::withdraw() {
  // ParticipantState::withdraw: a leadership this participant ends itself is resigned with a
  // signature; one whose key was deleted has nothing to sign.
  std::optional<TermInfo> sign;
  if (lease_ && term_ && term_->lease == lease_ && term_->reason != errc::key_deleted)
    sign = term_->key;
  if (lease_) withdraw_lease(std::exchange(lease_, nullptr), sign);
}

void Client::withdraw_lease(std::shared_ptr<LeaseRec> lease, std::optional<TermInfo> sign) {
  // Withdrawal::start: renewals stop now, whatever happens to the revocation.
  hub_remove(lease->id);
  withdrawn_[lease->id] = world_.now();
  trace("withdraws lease " + lease_hex(lease->id) + (sign ? " (signed)" : ""));
  if (lease->lost && lease->lost_reason == errc::lease_expired) return;
  lose(lease, errc::lease_revoked);
  const auto give_up = std::max(lease->clock.deadline(), world_.now()) + lease->clock.ttl() + 2s;
  auto backoff = std::make_shared<detail::Backoff>(200ms, 2s, rng_.next());
  if (!sign) {
    revoke_until(lease, give_up, backoff);
    return;
  }
  Txn txn;
  txn.compares.push_back({sign->key, sign->create_revision});
  txn.success.push_back({Txn::Op::Kind::del, sign->key, {}, 0});
  txn.success.push_back({Txn::Op::Kind::put, detail::resignation_key(world_.election(), lease->id),
                         std::to_string(sign->create_revision), lease->id});
  call(
      "resign", true,
      [txn](Store& store) {
        Reply r;
        r.txn = store.txn(txn, Cause::owner);
        return r;
      },
      [this, lease, give_up, backoff](std::optional<Reply>) {
        revoke_until(lease, give_up, backoff);
      });
}

void Client::revoke_until(std::shared_ptr<LeaseRec> lease, Time give_up,
                          std::shared_ptr<detail::Backoff> backoff) {
  const auto id = lease->id;
  call(
      "lease revoke", true,
      [id](Store& store) {
        store.revoke(id, Cause::owner);  // one etcd no longer has is not an error
        return Reply{};
      },
      [this, lease, give_up, backoff](std::optional<Reply> r) {
        if (r) return;
        if (world_.now() >= give_up) return;
        world_.at(world_.now() + backoff->next(), index_,
                  [this, lease, give_up, backoff] { revoke_until(lease, give_up, backoff); });
      });
}

}  // namespace election::sim
